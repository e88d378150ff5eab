/* json.c: the JSON reader behind json.h.
 *
 * A recursive-descent parser over a byte buffer, strict to RFC 8259: no
 * comments, no trailing commas, no leading zeros, strings must be valid
 * UTF-8 and lone surrogates in \u escapes are refused.  Strictness is the
 * point: the tool's job is to say clearly when a file is not a report, and
 * a lenient reader would let a damaged file through to confusing output.
 * Nesting is capped (JSON_MAX_DEPTH) so that a hostile file cannot run the
 * recursion off the stack.
 */
#include "json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reports nest five levels deep; 512 leaves room for anything sane while
 * keeping the recursion far below any thread's stack. */
#define JSON_MAX_DEPTH 512

typedef struct parser_s {
  const char *text;
  size_t len;
  size_t pos;
  int depth;
  char *err;
  size_t errsize;
  bool failed;
} parser_t;

/* ------------------------------------------------------------------------
 * Errors and memory
 * ---------------------------------------------------------------------- */

/* Record the first error only: later ones are consequences of it. */
__attribute__((format(printf, 2, 3))) static void parse_fail(parser_t *p, const char *fmt, ...) {
  if (p->failed) return;
  p->failed = true;
  if (p->errsize == 0) return;
  size_t line = 1, col = 1;
  for (size_t i = 0; i < p->pos && i < p->len; i++) {
    if (p->text[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  int n = snprintf(p->err, p->errsize, "line %zu, column %zu: ", line, col);
  if (n < 0 || (size_t)n >= p->errsize) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err + n, p->errsize - (size_t)n, fmt, ap);
  va_end(ap);
}

/* Out of memory ends the program: the tool has nothing useful to do
 * without the tree, and every caller would only pass the failure up. */
static void *json_xrealloc(void *old, size_t size) {
  void *q = realloc(old, size == 0 ? 1 : size);
  if (q == NULL) {
    fputs("tessera-report: out of memory\n", stderr);
    exit(2);
  }
  return q;
}

static json_t *json_new(json_type_t type) {
  json_t *v = json_xrealloc(NULL, sizeof *v);
  memset(v, 0, sizeof *v);
  v->type = type;
  return v;
}

void json_free(json_t *value) {
  if (value == NULL) return;
  for (size_t i = 0; i < value->count; i++) {
    json_free(value->items[i]);
    if (value->keys != NULL) free(value->keys[i]);
  }
  free(value->items);
  free(value->keys);
  free(value->string);
  free(value);
}

/* ------------------------------------------------------------------------
 * Scanning
 * ---------------------------------------------------------------------- */

static void skip_space(parser_t *p) {
  while (p->pos < p->len) {
    char c = p->text[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static bool match_word(parser_t *p, const char *word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0) return false;
  p->pos += n;
  return true;
}

/* Length of the valid UTF-8 sequence at s (at most avail bytes), or 0.
 * Overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_length(const unsigned char *s, size_t avail) {
  unsigned c = s[0];
  size_t n;
  unsigned cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    n = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (avail < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
  if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

static size_t utf8_encode(unsigned cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* The four hex digits after "\u"; -1 when they are not hex. */
static long read_hex4(parser_t *p) {
  if (p->len - p->pos < 4) return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->text[p->pos + (size_t)i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  p->pos += 4;
  return v;
}

/* One \u escape (the backslash and 'u' already read), joining a surrogate
 * pair into one code point.  -1 on error (reported). */
static long read_unicode_escape(parser_t *p) {
  long hi = read_hex4(p);
  if (hi < 0) {
    parse_fail(p, "\\u must be followed by four hex digits");
    return -1;
  }
  if (hi >= 0xdc00 && hi <= 0xdfff) {
    parse_fail(p, "lone low surrogate \\u%04lx", hi);
    return -1;
  }
  if (hi < 0xd800 || hi > 0xdbff) return hi;
  if (!match_word(p, "\\u")) {
    parse_fail(p, "high surrogate \\u%04lx without its low half", hi);
    return -1;
  }
  long lo = read_hex4(p);
  if (lo < 0xdc00 || lo > 0xdfff) {
    parse_fail(p, "high surrogate \\u%04lx without its low half", hi);
    return -1;
  }
  return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
}

/* A string; p->pos is at the opening quote.  Stores a malloc'ed,
 * NUL-terminated copy in *out and its length in *out_len. */
static bool parse_string_raw(parser_t *p, char **out, size_t *out_len) {
  size_t cap = 16, n = 0;
  char *buf = json_xrealloc(NULL, cap);
  p->pos++;
  for (;;) {
    if (p->pos >= p->len) {
      parse_fail(p, "unterminated string");
      break;
    }
    unsigned char c = (unsigned char)p->text[p->pos];
    char piece[4];
    size_t plen;
    if (c == '"') {
      p->pos++;
      buf[n] = 0;
      *out = buf;
      *out_len = n;
      return true;
    }
    if (c < 0x20) {
      parse_fail(p, "control character 0x%02x in a string (escape it)", c);
      break;
    }
    if (c == '\\') {
      p->pos++;
      char e = p->pos < p->len ? p->text[p->pos++] : 0;
      switch (e) {
      case '"': piece[0] = '"'; plen = 1; break;
      case '\\': piece[0] = '\\'; plen = 1; break;
      case '/': piece[0] = '/'; plen = 1; break;
      case 'b': piece[0] = '\b'; plen = 1; break;
      case 'f': piece[0] = '\f'; plen = 1; break;
      case 'n': piece[0] = '\n'; plen = 1; break;
      case 'r': piece[0] = '\r'; plen = 1; break;
      case 't': piece[0] = '\t'; plen = 1; break;
      case 'u': {
        long cp = read_unicode_escape(p);
        if (cp < 0) goto fail;
        plen = utf8_encode((unsigned)cp, piece);
        break;
      }
      default:
        parse_fail(p, "unknown escape in a string");
        goto fail;
      }
    } else {
      plen = utf8_length((const unsigned char *)p->text + p->pos, p->len - p->pos);
      if (plen == 0) {
        parse_fail(p, "invalid UTF-8 in a string");
        break;
      }
      memcpy(piece, p->text + p->pos, plen);
      p->pos += plen;
    }
    if (n + plen + 1 > cap) {
      cap *= 2;
      buf = json_xrealloc(buf, cap);
    }
    memcpy(buf + n, piece, plen);
    n += plen;
  }
fail:
  free(buf);
  return false;
}

/* A number per the RFC grammar.  The integer value is computed by hand so
 * that counts above 2^53 stay exact; strtod gives the double. */
static json_t *parse_number(parser_t *p) {
  size_t start = p->pos;
  bool negative = false, exact = true;
  uint64_t mag = 0;
  if (p->text[p->pos] == '-') {
    negative = true;
    p->pos++;
  }
  if (p->pos >= p->len || p->text[p->pos] < '0' || p->text[p->pos] > '9') {
    parse_fail(p, "a number needs digits");
    return NULL;
  }
  if (p->text[p->pos] == '0' && p->pos + 1 < p->len && p->text[p->pos + 1] >= '0' &&
      p->text[p->pos + 1] <= '9') {
    parse_fail(p, "leading zero in a number");
    return NULL;
  }
  while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') {
    unsigned d = (unsigned)(p->text[p->pos] - '0');
    if (mag > (UINT64_MAX - d) / 10) exact = false;
    else mag = mag * 10 + d;
    p->pos++;
  }
  if (p->pos < p->len && p->text[p->pos] == '.') {
    exact = false;
    p->pos++;
    if (p->pos >= p->len || p->text[p->pos] < '0' || p->text[p->pos] > '9') {
      parse_fail(p, "a digit must follow the decimal point");
      return NULL;
    }
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->len && (p->text[p->pos] == 'e' || p->text[p->pos] == 'E')) {
    exact = false;
    p->pos++;
    if (p->pos < p->len && (p->text[p->pos] == '+' || p->text[p->pos] == '-')) p->pos++;
    if (p->pos >= p->len || p->text[p->pos] < '0' || p->text[p->pos] > '9') {
      parse_fail(p, "a digit must follow the exponent");
      return NULL;
    }
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') p->pos++;
  }
  json_t *v = json_new(JSON_NUMBER);
  size_t n = p->pos - start;
  char *copy = json_xrealloc(NULL, n + 1);
  memcpy(copy, p->text + start, n);
  copy[n] = 0;
  v->number = strtod(copy, NULL);
  free(copy);
  if (exact && !negative && mag <= (uint64_t)INT64_MAX) {
    v->is_int = true;
    v->integer = (int64_t)mag;
  } else if (exact && negative && mag <= (uint64_t)INT64_MAX + 1) {
    v->is_int = true;
    v->integer = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
  }
  return v;
}

/* ------------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------- */

static json_t *parse_value(parser_t *p);

static void container_push(json_t *c, size_t *cap, char *key, json_t *item) {
  if (c->count == *cap) {
    *cap = *cap ? *cap * 2 : 4;
    c->items = json_xrealloc(c->items, *cap * sizeof *c->items);
    if (c->type == JSON_OBJECT) c->keys = json_xrealloc(c->keys, *cap * sizeof *c->keys);
  }
  if (c->type == JSON_OBJECT) c->keys[c->count] = key;
  c->items[c->count++] = item;
}

/* An array or object; p->pos is at the opening bracket. */
static json_t *parse_container(parser_t *p, json_type_t type) {
  char close = type == JSON_ARRAY ? ']' : '}';
  json_t *c = json_new(type);
  size_t cap = 0;
  p->pos++;
  skip_space(p);
  if (p->pos < p->len && p->text[p->pos] == close) {
    p->pos++;
    return c;
  }
  for (;;) {
    char *key = NULL;
    if (type == JSON_OBJECT) {
      size_t klen;
      skip_space(p);
      if (p->pos >= p->len || p->text[p->pos] != '"') {
        parse_fail(p, "expected a member name in double quotes");
        break;
      }
      if (!parse_string_raw(p, &key, &klen)) break;
      skip_space(p);
      if (p->pos >= p->len || p->text[p->pos] != ':') {
        free(key);
        parse_fail(p, "expected ':' after a member name");
        break;
      }
      p->pos++;
    }
    json_t *item = parse_value(p);
    if (item == NULL) {
      free(key);
      break;
    }
    container_push(c, &cap, key, item);
    skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->text[p->pos] == close) {
      p->pos++;
      return c;
    }
    parse_fail(p, "expected ',' or '%c'", close);
    break;
  }
  json_free(c);
  return NULL;
}

static json_t *parse_value(parser_t *p) {
  skip_space(p);
  if (p->pos >= p->len) {
    parse_fail(p, "unexpected end of input");
    return NULL;
  }
  char c = p->text[p->pos];
  json_t *v = NULL;
  if (c == '{' || c == '[') {
    if (++p->depth > JSON_MAX_DEPTH) {
      parse_fail(p, "nested more than %d levels deep", JSON_MAX_DEPTH);
      return NULL;
    }
    v = parse_container(p, c == '{' ? JSON_OBJECT : JSON_ARRAY);
    p->depth--;
  } else if (c == '"') {
    v = json_new(JSON_STRING);
    if (!parse_string_raw(p, &v->string, &v->len)) {
      free(v);
      v = NULL;
    }
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    v = parse_number(p);
  } else if (match_word(p, "true")) {
    v = json_new(JSON_BOOL);
    v->boolean = true;
  } else if (match_word(p, "false")) {
    v = json_new(JSON_BOOL);
  } else if (match_word(p, "null")) {
    v = json_new(JSON_NULL);
  } else {
    parse_fail(p, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? c : '?');
  }
  return v;
}

json_t *json_parse(const char *text, size_t len, size_t *pos, char *err, size_t errsize) {
  parser_t p = { text, len, *pos, 0, err, errsize, false };
  if (errsize > 0) err[0] = 0;
  json_t *v = parse_value(&p);
  *pos = p.pos;
  return v;
}

/* ------------------------------------------------------------------------
 * Lookups
 * ---------------------------------------------------------------------- */

const json_t *json_get(const json_t *obj, const char *key) {
  if (obj == NULL || obj->type != JSON_OBJECT) return NULL;
  for (size_t i = 0; i < obj->count; i++)
    if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
  return NULL;
}

const char *json_type_name(json_type_t type) {
  switch (type) {
  case JSON_NULL: return "null";
  case JSON_BOOL: return "a boolean";
  case JSON_NUMBER: return "a number";
  case JSON_STRING: return "a string";
  case JSON_ARRAY: return "an array";
  case JSON_OBJECT: return "an object";
  }
  return "?";
}
