/* json.h: a small JSON reader for tessera-report.
 *
 * Owns parsing RFC 8259 text into a tree of malloc'ed nodes and the few
 * lookups the report tool needs.  It knows nothing about tessera's report
 * format: checking a tree against docs/report-schema.json is the tool's job.
 *
 * One call parses one value and says where it stopped, so the caller can
 * read a JSON Lines file (one document per line) or any other sequence of
 * documents separated by whitespace.  Integers that fit in int64_t are kept
 * exactly, because the reports carry byte counts that a double would round
 * above 2^53.
 */
#ifndef TSR_TOOLS_JSON_H
#define TSR_TOOLS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum json_type_e {
  JSON_NULL,
  JSON_BOOL,
  JSON_NUMBER,
  JSON_STRING,
  JSON_ARRAY,
  JSON_OBJECT,
} json_type_t;

typedef struct json_s json_t;

struct json_s {
  json_type_t type;
  bool boolean;             /* JSON_BOOL */
  bool is_int;              /* JSON_NUMBER: no fraction or exponent, fits int64_t */
  int64_t integer;          /* JSON_NUMBER with is_int */
  double number;            /* JSON_NUMBER, always set (rounded for large integers) */
  char *string;             /* JSON_STRING: UTF-8, NUL-terminated (may hold \u0000 before len) */
  size_t len;               /* JSON_STRING: bytes in string, without the terminator */
  size_t count;             /* JSON_ARRAY, JSON_OBJECT: items */
  json_t **items;           /* JSON_ARRAY, JSON_OBJECT: count values, in document order */
  char **keys;              /* JSON_OBJECT: count names, keys[i] names items[i]; NULL for arrays */
};

/* Parse the JSON value that starts at text[*pos], after any whitespace,
 * and move *pos just past it.  Returns the tree (free it with json_free).
 * On a syntax error, or when only whitespace is left, returns NULL and
 * writes a message naming the line and column (counted from text[0]) into
 * err, errsize bytes. */
json_t *json_parse(const char *text, size_t len, size_t *pos, char *err, size_t errsize);

void json_free(json_t *value);

/* The member named key of an object, or NULL (also when obj is NULL or
 * not an object).  With duplicate names, the first one wins. */
const json_t *json_get(const json_t *obj, const char *key);

/* Name of a type for messages: "null", "a boolean", "a number", ... */
const char *json_type_name(json_type_t type);

#endif /* TSR_TOOLS_JSON_H */
