/* test_report_tool.c: tessera-report, the reader of tessera's JSON reports.
 *
 * Runs the tool (path in TSR_REPORT_TOOL, from CMake) on the hand-written
 * reports in tests/data (TSR_TEST_DATA).  report-a.json holds two reports
 * of demo-server, one per line: pid 4100 (sampled, early) and then pid
 * 4242, the one the tool picks by default.  report-b.json holds a later
 * run (pid 5150, written at exit, with a leak section) in which the site
 * through cache_insert grew by 16 blocks of 4096 bytes, a site through
 * session_open is new, and the 4096-byte class grew with them.  Only
 * report-b.json has a pins section (report-a.json stands for the reports
 * written before there was one): of its map's four sparse pages (one of
 * 16-byte blocks, 1096 of 4096 live; two of 64-byte blocks, 200 and 10 of
 * 1024; one of 4096-byte blocks over two slots, 8 of 32), parse_header's
 * blocks hold the two of 64-byte blocks, session_open's eight the big one
 * and intern_string's the 16-byte one, so each page's bytes add up in its
 * sites' shares.  Its pins section has meshable and mesh too (six pairs
 * of OS pages meshed now, of nine made and three taken apart), which
 * reports written before meshing lack.  Its one error is a double free
 * (stats.errors_by_kind), which report-a.json, from before errors were
 * counted by kind, does not list.
 * Checks what each command prints, the shape of the SVG map, and that bad
 * input ends with status 2 and a message.
 */
#include "tsr_criterion.h"

#include <stdarg.h>

#include "tsr_test.h"

#define REPORT_A TSR_TEST_DATA "/report-a.json"
#define REPORT_B TSR_TEST_DATA "/report-b.json"

typedef struct run_s {
  int code;                 /* exit status, or -1 when the tool died of a signal */
  char *out;                /* stdout, malloc'ed */
  tsr_child_t child;        /* stderr in child.err */
} run_t;

static char *read_stream(FILE *f) {
  char *text = tsr_test_slurp(f, NULL);
  cr_assert_not_null(text);
  return text;
}

static char *read_path(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  char *text = read_stream(f);
  fclose(f);
  return text;
}

/* Run the tool with the NULL-terminated arguments. */
static run_t *tool(const char *first, ...) {
  static run_t run;
  char *argv[16];
  size_t n = 0;
  argv[n++] = (char *)TSR_REPORT_TOOL;
  va_list ap;
  va_start(ap, first);
  for (const char *a = first; a != NULL && n < 15; a = va_arg(ap, const char *))
    argv[n++] = (char *)a;
  va_end(ap);
  argv[n] = NULL;
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  char *env[] = { (char *)"LC_ALL=C", NULL };
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &run.child), "could not start the tool");
  run.code = WIFEXITED(run.child.status) ? WEXITSTATUS(run.child.status) : -1;
  run.out = read_stream(out);
  fclose(out);
  return &run;
}

static void expect_ok(const run_t *r, const char *what) {
  cr_assert_eq(r->code, 0, "%s: status %d\nstderr:\n%s", what, r->code, r->child.err);
}

static void expect_has(const char *text, const char *needle, const char *what) {
  cr_assert_not_null(strstr(text, needle), "%s: no \"%s\" in:\n%s", what, needle, text);
}

/* The line of text that contains needle, copied into line; fails without one. */
static void line_with(const char *text, const char *needle, char *line, size_t size) {
  const char *at = strstr(text, needle);
  cr_assert_not_null(at, "no line with \"%s\" in:\n%s", needle, text);
  const char *start = at;
  while (start > text && start[-1] != '\n') start--;
  size_t n = strcspn(start, "\n");
  snprintf(line, size, "%.*s", (int)(n < size ? n : size - 1), start);
}

static size_t count_of(const char *text, const char *needle) {
  size_t n = 0;
  for (const char *s = strstr(text, needle); s != NULL; s = strstr(s + 1, needle)) n++;
  return n;
}

/* Does a line of text start with token (after spaces, before a space)? */
static bool has_row(const char *text, const char *token) {
  size_t n = strlen(token);
  for (const char *l = text; *l;) {
    const char *tok = l + strspn(l, " ");
    if (strncmp(tok, token, n) == 0 && tok[n] == ' ') return true;
    const char *nl = strchr(l, '\n');
    if (nl == NULL) break;
    l = nl + 1;
  }
  return false;
}

/* Slots in the report of the fixture's last line (or of the line holding
 * pid_field), counted from the "slots" strings themselves, so that the test
 * follows the fixture if it changes. */
static size_t fixture_slots(const char *path, const char *pid_field) {
  char *text = read_path(path);
  char *line = text, *next;
  for (char *l = text; *l; l = next) {
    next = strchr(l, '\n');
    next = next ? next + 1 : l + strlen(l);
    if (next - l > 1 && (pid_field == NULL || strstr(l, pid_field) != NULL)) line = l;
  }
  char *end = strchr(line, '\n');
  if (end) *end = 0;
  size_t slots = 0;
  for (const char *s = strstr(line, "\"slots\":\""); s != NULL; s = strstr(s + 1, "\"slots\":\""))
    slots += strcspn(s + 9, "\"");
  free(text);
  return slots;
}

/* A scratch directory for the files a test writes; the test calls
 * cleanup() at its end (a failed test leaves it in /tmp to look at). */
static char scratch[64];

static const char *scratch_file(const char *name, const char *contents) {
  static char path[128];
  if (scratch[0] == 0) {
    strcpy(scratch, "/tmp/tsr-report-tool-XXXXXX");
    cr_assert_not_null(mkdtemp(scratch));
  }
  snprintf(path, sizeof path, "%s/%s", scratch, name);
  if (contents != NULL) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(contents, f);
    fclose(f);
  }
  return path;
}

/* A copy of text with [from, to) replaced by with, where from is the first
 * place of start and to the first of end after it; malloc'ed. */
static char *text_splice(const char *text, const char *start, const char *end, const char *with) {
  const char *from = strstr(text, start);
  const char *to = from ? strstr(from, end) : NULL;
  cr_assert(from != NULL && to != NULL, "no %s...%s to replace", start, end);
  size_t head = (size_t)(from - text);
  char *out = malloc(head + strlen(with) + strlen(to) + 1);
  cr_assert_not_null(out);
  memcpy(out, text, head);
  strcpy(out + head, with);
  strcat(out, to);
  return out;
}

/* report-b.json with its pins section replaced by pins (the member and
 * its comma; "" leaves the section out), as the scratch file name. */
static const char *report_b_pins(const char *name, const char *pins) {
  char *text = read_path(REPORT_B);
  char *out = text_splice(text, "\"pins\":", "\"leaks\":", pins);
  const char *path = scratch_file(name, out);
  free(out);
  free(text);
  return path;
}

static void cleanup(void) {
  if (scratch[0] == 0) return;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
  cr_assert_eq(system(cmd), 0);
}

/* ------------------------------------------------------------------------ */

Test(report_tool, help) {
  run_t *r = tool("--help", NULL);
  expect_ok(r, "--help");
  expect_has(r->out, "usage: tessera-report", "--help");
  expect_has(r->out, "diff OLD NEW", "--help");
  expect_has(r->out, "pins [-n N] FILE", "--help");
}

Test(report_tool, summary_is_the_default) {
  run_t *r = tool(REPORT_A, NULL);
  expect_ok(r, "summary");
  const char *out = r->out;
  expect_has(out, "demo-server (pid 4242)", "summary");
  expect_has(out, "reason interval", "summary");
  char line[512];
  line_with(out, "requested", line, sizeof line);
  expect_has(line, "1300000 B", "requested");
  cr_assert_null(strstr(out, "(estimates)"), "exact figures marked as estimates:\n%s", out);
  line_with(out, "allocated ", line, sizeof line);
  expect_has(line, "1389696 B", "allocated");
  expect_has(line, "1.3 MiB", "allocated");
  line_with(out, "committed ", line, sizeof line);
  expect_has(line, "2232320 B", "committed");
  line_with(out, "reserved ", line, sizeof line);
  expect_has(line, "9441280 B", "reserved");
  line_with(out, "metadata ", line, sizeof line);
  expect_has(line, "270336 B", "metadata");
  line_with(out, "live blocks", line, sizeof line);
  expect_has(line, "5379", "live blocks");
  line_with(out, "efficiency", line, sizeof line);
  expect_has(line, "58.2%", "efficiency");
  expect_has(out, "load_snapshot < main", "summary's top sites");
  expect_has(out, "largest free range 1.9 GiB at 0x40901000", "summary's address space");
  cr_assert_null(strstr(out, "leaks:"), "a report without a leak section shows leaks");

  run_t *same = tool("summary", REPORT_A, NULL);
  expect_ok(same, "summary");
  cr_assert(strcmp(same->out, out) == 0, "summary and the default differ");
}

Test(report_tool, pid_picks_the_other_report) {
  run_t *r = tool("summary", "--pid", "4100", REPORT_A, NULL);
  expect_ok(r, "--pid 4100");
  expect_has(r->out, "demo-server (pid 4100)", "--pid 4100");
  expect_has(r->out, "40960 B", "--pid 4100");
  expect_has(r->out, "(estimates)", "a sampled report");
  cr_assert_null(strstr(r->out, "pid 4242"), "--pid 4100 shows pid 4242:\n%s", r->out);

  r = tool("sites", "--pid", "4100", REPORT_A, NULL);
  expect_ok(r, "sites --pid 4100");
  expect_has(r->out, "bytes ~40960", "estimated figures");
  expect_has(r->out, "warmup_buffers+0x12 (src/warmup.c:9)", "sites --pid 4100");
  expect_has(r->out, "0xbfff0010", "a frame with only an address");

  r = tool("--pid", "9999", REPORT_A, NULL);
  cr_assert_eq(r->code, 2, "--pid of no report: status %d", r->code);
  expect_has(r->child.err, "no report of pid 9999", "--pid 9999");
}

Test(report_tool, sites_biggest_first) {
  run_t *r = tool("sites", REPORT_A, NULL);
  expect_ok(r, "sites");
  const char *out = r->out;
  const char *names[] = { "load_snapshot", "cache_insert", "parse_header", "intern_string" };
  const char *prev = out;
  for (size_t i = 0; i < 4; i++) {
    const char *at = strstr(out, names[i]);
    cr_assert(at != NULL && at > prev, "%s missing or out of order:\n%s", names[i], out);
    prev = at;
  }
  char line[512];
  line_with(out, "#1 ", line, sizeof line);
  expect_has(line, "bytes 1048576", "the biggest site");
  expect_has(line, "blocks 1 ", "the biggest site");
  expect_has(line, "requested 1000000", "the biggest site");
  expect_has(line, "waste 48576", "the biggest site");
  line_with(out, "#2 ", line, sizeof line);
  expect_has(line, "bytes 196608", "the second site");
  expect_has(out, "load_snapshot+0x88 (src/snapshot.c:131)", "a frame with a function");
  expect_has(out, "main+0x9a (src/main.c:41)", "a frame with a function");
  expect_has(out, "/lib/libc.so.6+0x29d90", "a frame with only a module");

  r = tool("sites", "-n", "2", REPORT_A, NULL);
  expect_ok(r, "sites -n 2");
  expect_has(r->out, "cache_insert", "sites -n 2");
  cr_assert_null(strstr(r->out, "parse_header"), "sites -n 2 shows a third site:\n%s", r->out);
}

Test(report_tool, classes_one_row_each) {
  run_t *r = tool("classes", REPORT_B, NULL);
  expect_ok(r, "classes");
  const char *sizes[] = { "16", "64", "4096", "large" };
  for (size_t i = 0; i < 4; i++)
    cr_assert(has_row(r->out, sizes[i]), "no row for block size %s:\n%s", sizes[i], r->out);
  char line[512];
  line_with(r->out, "72/112", line, sizeof line);
  expect_has(line, "64.3%", "the 4096-byte class's utilisation");
}

Test(report_tool, leaks) {
  run_t *r = tool("leaks", REPORT_B, NULL);
  expect_ok(r, "leaks");
  expect_has(r->out, "9 blocks, 1081344 bytes", "leaks");
  expect_has(r->out, "5394 expected", "leaks");
  char line[512];
  const char *by_fn = strstr(r->out, "by allocating function");
  const char *by_stack = strstr(r->out, "by call stack");
  cr_assert(by_fn != NULL && by_stack != NULL && by_fn < by_stack, "leak sections:\n%s", r->out);
  line_with(by_fn, "session_open", line, sizeof line);
  expect_has(line, "32768 B", "leaks by function");
  expect_has(line, "8 blocks", "leaks by function");
  expect_has(by_stack, "load_snapshot+0x88", "leaks by stack");
  expect_has(by_stack, "session_open+0x31", "leaks by stack");

  r = tool(REPORT_B, NULL);
  expect_ok(r, "summary at exit");
  expect_has(r->out, "leaks: 9 blocks", "summary at exit");

  r = tool("leaks", REPORT_A, NULL);
  expect_ok(r, "leaks without a section");
  expect_has(r->out, "no leak section (the report was not written at exit)", "leaks");
}

Test(report_tool, pins_by_bytes_held) {
  run_t *r = tool("pins", REPORT_B, NULL);
  expect_ok(r, "pins");
  const char *out = r->out;
  expect_has(out, "demo-server (pid 5150): sparse pages (at most half their blocks live)", "pins");
  char line[512];
  line_with(out, " pages, ", line, sizeof line);
  expect_has(line, "4 pages, 327680 B (320.0 KiB)", "the totals");
  expect_has(line, "holding 63744 B (62.2 KiB) of live blocks", "the totals");
  expect_has(line, "263936 B (257.8 KiB) free", "the totals");
  expect_has(out, "held by 3 sites (3 listed), most pinned bytes first\n", "exact figures");
  /* The order of the pins section, not of the sites: cache_insert holds
   * more bytes than any of them, all in full pages, and pins nothing. */
  cr_assert_null(strstr(out, "cache_insert"), "a site in full pages pins:\n%s", out);
  cr_assert_null(strstr(out, "~"), "exact figures marked as estimates:\n%s", out);
  /* #1 and #2 hold equal bytes: the writer put stack 3 before stack 5. */
  const char *first = strstr(out, "#1 "), *second = strstr(out, "#2 "), *third = strstr(out, "#3 ");
  cr_assert(first && second && third && first < second && second < third, "ranks:\n%s", out);
  cr_assert_null(strstr(out, "#4 "), "a fourth site:\n%s", out);
  line_with(first, "#1 ", line, sizeof line);
  expect_has(line, "pinned 131072 (128.0 KiB)  idle 117632 (114.9 KiB)  blocks 210", "#1");
  line_with(second, "#2 ", line, sizeof line);
  expect_has(line, "pinned 131072 (128.0 KiB)  idle 98304 (96.0 KiB)  blocks 8", "#2");
  line_with(third, "#3 ", line, sizeof line);
  expect_has(line, "pinned 65536 (64.0 KiB)  idle 48000 (46.9 KiB)  blocks 1096", "#3");
  /* Frames named as the sites view names them, under their own site. */
  const char *at = strstr(out, "parse_header+0x22 (src/http.c:57)");
  cr_assert(at != NULL && at > first && at < second, "#1's frames:\n%s", out);
  at = strstr(out, "session_open+0x31 (src/session.c:77)");
  cr_assert(at != NULL && at > second && at < third, "#2's frames:\n%s", out);
  at = strstr(out, "/usr/bin/demo-server+0x1f00");
  cr_assert(at != NULL && at > third, "#3's frames:\n%s", out);

  /* Meshing's lines, between the totals and the sites. */
  line_with(out, " meshable ", line, sizeof line);
  expect_has(line, "  57344 B (56.0 KiB) meshable (pairs whose live blocks miss each other)", "meshable");
  line_with(out, "meshing: ", line, sizeof line);
  expect_has(line, "  meshing: on; 12 OS pages share physical pages now, 24576 B (24.0 KiB) saved; "
                   "9 meshed since start, 3 taken apart, in 41 passes, 12.3 ms in all, longest page pause 35.2 us",
             "meshing");
  const char *mesh = strstr(out, "meshing: ");
  cr_assert(mesh != NULL && mesh < strstr(out, "held by "), "meshing after the sites:\n%s", out);

  r = tool("pins", "-n", "1", REPORT_B, NULL);
  expect_ok(r, "pins -n 1");
  expect_has(r->out, "parse_header", "pins -n 1");
  cr_assert_null(strstr(r->out, "session_open"), "pins -n 1 shows a second site:\n%s", r->out);
  expect_has(r->out, "(2 more: tessera-report pins -n 3)", "pins -n 1");

  /* The summary has the totals in a line of its own. */
  r = tool(REPORT_B, NULL);
  expect_ok(r, "summary with pins");
  line_with(r->out, "sparse pages", line, sizeof line);
  expect_has(line, "320.0 KiB  327680 B in 4 pages, 62.2 KiB of it live", "summary");
}

Test(report_tool, pins_estimated_and_site_0) {
  /* Sampled: the sites' figures are estimates, and site 0 is what they
   * leave of the exact totals. */
  char *text = read_path(REPORT_B);
  char *sampled = text_splice(text, "\"track\":", ",\"sample_bytes\"", "\"track\":\"sample\"");
  char *pinned = text_splice(sampled, "\"pins\":", "\"leaks\":",
                        "\"pins\":{\"pages\":4,\"bytes\":327680,\"live\":63744,\"sites\":["
                        "{\"id\":3,\"blocks\":256,\"pinned\":150000,\"idle\":130000,"
                        "\"estimated\":true,\"frames\":[{\"addr\":\"0x804b022\","
                        "\"function\":\"parse_header\",\"offset\":34}]},"
                        "{\"id\":0,\"blocks\":800,\"pinned\":120000,\"idle\":90000,"
                        "\"estimated\":true,\"frames\":[]},"
                        "{\"id\":5,\"blocks\":7,\"pinned\":57680,\"idle\":43936,"
                        "\"estimated\":true,\"frames\":[{\"addr\":\"0x8050031\"}]}],"
                        "\"sites_total\":9},");
  run_t *r = tool("pins", scratch_file("sampled.json", pinned), NULL);
  free(text);
  free(sampled);
  free(pinned);
  expect_ok(r, "pins, sampled");
  const char *out = r->out;
  expect_has(out, "4 pages, 327680 B", "exact totals");
  expect_has(out, "held by 9 sites (3 listed), most pinned bytes first (~: estimated from samples)",
             "sampled");
  char line[512];
  line_with(out, "#1 ", line, sizeof line);
  expect_has(line, "pinned ~150000 (146.5 KiB)  idle ~130000 (127.0 KiB)  blocks ~256", "#1");
  const char *zero = strstr(out, "#2 ");
  cr_assert_not_null(zero, "no #2:\n%s", out);
  line_with(zero, "#2 ", line, sizeof line);
  expect_has(line, "pinned ~120000", "site 0");
  cr_assert(strncmp(strchr(zero, '\n') + 1, "       (blocks without a record)\n", 33) == 0,
            "site 0's stack:\n%s", out);
  const char *third = strstr(out, "#3 ");
  cr_assert(third != NULL && strstr(third, "       0x8050031\n") != NULL, "#3's frame:\n%s", out);
  const char *frame = strstr(out, "       parse_header+0x22\n");
  cr_assert(frame != NULL && frame < zero, "#1's frame:\n%s", out);
  cleanup();
}

/* report-b.json with its pins.mesh object replaced by mesh ("" leaves it
 * out, with the comma after it), as the scratch file name. */
static const char *report_b_mesh(const char *name, const char *mesh) {
  char *text = read_path(REPORT_B);
  char *out = text_splice(text, "\"mesh\":", "\"sites\":", mesh);
  const char *path = scratch_file(name, out);
  free(out);
  free(text);
  return path;
}

Test(report_tool, pins_mesh_states) {
  static const struct {
    const char *name, *mesh, *line;
  } cases[] = {
    { "off.json",
      "\"mesh\":{\"state\":\"off\",\"meshed_pages\":0,\"saved\":0,\"meshes\":0,\"unmeshes\":0,"
      "\"passes\":0,\"time_ns\":0,\"pause_max_ns\":0},",
      "  meshing: off\n" },
    { "unsupported.json",
      "\"mesh\":{\"state\":\"unsupported\",\"meshed_pages\":0,\"saved\":0,\"meshes\":0,"
      "\"unmeshes\":0,\"passes\":3,\"time_ns\":0,\"pause_max_ns\":0},",
      "  meshing: unsupported by this OS\n" },
    { "unsupported-why.json",
      "\"mesh\":{\"state\":\"unsupported\",\"why\":\"placeholders (VirtualAlloc2, MapViewOfFile3) not "
      "available: VirtualAlloc2 refuses MEM_RESERVE_PLACEHOLDER\",\"meshed_pages\":0,\"saved\":0,"
      "\"meshes\":0,\"unmeshes\":0,\"passes\":1,\"time_ns\":0,\"pause_max_ns\":0},",
      "  meshing: unsupported by this OS: placeholders (VirtualAlloc2, MapViewOfFile3) not available: "
      "VirtualAlloc2 refuses MEM_RESERVE_PLACEHOLDER\n" },
    { "paused.json",
      "\"mesh\":{\"state\":\"paused\",\"meshed_pages\":2,\"saved\":4096,\"meshes\":1,"
      "\"unmeshes\":0,\"passes\":1,\"time_ns\":850,\"pause_max_ns\":2500000000},",
      "  meshing: paused (tessera's SIGSEGV handler is not in front, the mapping budget is spent, "
      "or the program forbade itself system calls); 2 OS pages share physical pages now, 4096 B (4.0 KiB) "
      "saved; 1 meshed since start, 0 taken "
      "apart, in 1 pass, 850 ns in all, longest page pause 2.5 s\n" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    run_t *r = tool("pins", report_b_mesh(cases[i].name, cases[i].mesh), NULL);
    expect_ok(r, cases[i].name);
    expect_has(r->out, cases[i].line, cases[i].name);
  }
  /* Written before meshing: no mesh object, or neither it nor meshable. */
  run_t *r = tool("pins", report_b_mesh("no-mesh.json", ""), NULL);
  expect_ok(r, "pins without mesh");
  expect_has(r->out, "4 pages, 327680 B", "pins without mesh");
  expect_has(r->out, "57344 B (56.0 KiB) meshable", "pins without mesh");
  cr_assert_null(strstr(r->out, "meshing"), "a meshing line without mesh:\n%s", r->out);
  char *text = read_path(REPORT_B);
  char *old = text_splice(text, "\"meshable\":", "\"sites\":", "");
  r = tool("pins", scratch_file("no-meshable.json", old), NULL);
  free(old);
  free(text);
  expect_ok(r, "pins without meshable and mesh");
  expect_has(r->out, "held by 3 sites (3 listed)", "pins without meshable and mesh");
  cr_assert_null(strstr(r->out, "mesh"), "meshing figures without them:\n%s", r->out);
  cleanup();
}

Test(report_tool, pins_missing) {
  run_t *r = tool("pins", REPORT_A, NULL);
  expect_ok(r, "pins without a section");
  expect_has(r->out, "demo-server (pid 4242)", "pins without a section");
  expect_has(r->out, "this report has no pins section", "pins without a section");
  cr_assert_null(strstr(r->out, "#1"), "sites without a pins section:\n%s", r->out);
  r = tool("pins", "--pid", "4100", REPORT_A, NULL);
  expect_ok(r, "pins --pid 4100");
  expect_has(r->out, "this report has no pins section", "pins --pid 4100");
  cr_assert_null(strstr(r->out, "mesh"), "meshing without a pins section:\n%s", r->out);
  r = tool(REPORT_A, NULL);
  expect_ok(r, "summary without pins");
  cr_assert_null(strstr(r->out, "sparse pages"), "summary without pins:\n%s", r->out);

  /* The same report as one with pins, less the section, loads for every view. */
  const char *path = report_b_pins("no-pins.json", "");
  r = tool("pins", path, NULL);
  expect_ok(r, "report-b without pins");
  expect_has(r->out, "this report has no pins section", "report-b without pins");
  r = tool("leaks", path, NULL);
  expect_ok(r, "leaks of report-b without pins");
  expect_has(r->out, "9 blocks, 1081344 bytes", "leaks of report-b without pins");
  cleanup();
}

Test(report_tool, pins_malformed) {
  static const struct {
    const char *name, *pins, *error;
  } cases[] = {
    { "array.json", "\"pins\":[],", "pins: must be an object, not an array" },
    { "no-live.json", "\"pins\":{\"pages\":1,\"bytes\":65536,\"sites\":[],\"sites_total\":0},",
      "pins.live: missing" },
    { "no-total.json", "\"pins\":{\"pages\":0,\"bytes\":0,\"live\":0,\"sites\":[]},",
      "pins.sites_total: missing" },
    { "negative.json",
      "\"pins\":{\"pages\":1,\"bytes\":65536,\"live\":64,\"sites\":[{\"id\":0,\"blocks\":1,"
      "\"pinned\":65536,\"idle\":65472,\"estimated\":false,\"frames\":[]},{\"id\":7,"
      "\"blocks\":1,\"pinned\":-5,\"idle\":0,\"estimated\":false,\"frames\":[]}],"
      "\"sites_total\":2},",
      "pins.sites[1].pinned: must be a non-negative integer" },
    { "no-idle.json",
      "\"pins\":{\"pages\":1,\"bytes\":65536,\"live\":64,\"sites\":[{\"id\":3,\"blocks\":1,"
      "\"pinned\":65536,\"estimated\":false,\"frames\":[]}],\"sites_total\":1},",
      "pins.sites[0].idle: missing" },
    { "estimated.json",
      "\"pins\":{\"pages\":1,\"bytes\":65536,\"live\":64,\"sites\":[{\"id\":3,\"blocks\":1,"
      "\"pinned\":65536,\"idle\":65472,\"estimated\":\"no\",\"frames\":[]}],\"sites_total\":1},",
      "pins.sites[0].estimated: must be a boolean, not a string" },
    { "frame.json",
      "\"pins\":{\"pages\":1,\"bytes\":65536,\"live\":64,\"sites\":[{\"id\":3,\"blocks\":1,"
      "\"pinned\":65536,\"idle\":65472,\"estimated\":false,\"frames\":[{\"addr\":\"0x10\"},"
      "{\"function\":\"f\"}]}],\"sites_total\":1},",
      "pins.sites[0].frames[1].addr: missing" },
    { "meshable.json",
      "\"pins\":{\"pages\":0,\"bytes\":0,\"live\":0,\"meshable\":\"none\",\"sites\":[],\"sites_total\":0},",
      "pins.meshable: must be a non-negative integer" },
    { "mesh-state.json",
      "\"pins\":{\"pages\":0,\"bytes\":0,\"live\":0,\"mesh\":{\"state\":\"busy\",\"meshed_pages\":0,"
      "\"saved\":0,\"meshes\":0,\"unmeshes\":0,\"passes\":0,\"time_ns\":0,\"pause_max_ns\":0},"
      "\"sites\":[],\"sites_total\":0},",
      "pins.mesh.state: \"busy\" is not one of the values the schema allows" },
    { "mesh-saved.json",
      "\"pins\":{\"pages\":0,\"bytes\":0,\"live\":0,\"mesh\":{\"state\":\"on\",\"meshed_pages\":0,"
      "\"meshes\":0,\"unmeshes\":0,\"passes\":0,\"time_ns\":0,\"pause_max_ns\":0},"
      "\"sites\":[],\"sites_total\":0},",
      "pins.mesh.saved: missing" },
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *path = report_b_pins(cases[i].name, cases[i].pins);
    /* Every view refuses it, not only pins: the whole report is checked. */
    const char *views[] = { "pins", "summary" };
    for (size_t v = 0; v < 2; v++) {
      run_t *r = tool(views[v], path, NULL);
      cr_assert_eq(r->code, 2, "%s of %s: status %d\nstdout:\n%s", views[v], cases[i].name, r->code,
                   r->out);
      expect_has(r->child.err, "line 1: not a valid tessera report: ", cases[i].name);
      expect_has(r->child.err, cases[i].error, cases[i].name);
      cr_assert_eq(r->out[0], 0, "%s of %s printed:\n%s", views[v], cases[i].name, r->out);
    }
  }
  cleanup();
}

Test(report_tool, diff_names_growth) {
  run_t *r = tool("diff", REPORT_A, REPORT_B, NULL);
  expect_ok(r, "diff");
  const char *out = r->out;
  char line[1024];
  line_with(out, "  allocated", line, sizeof line);
  expect_has(line, "+98304", "allocated's delta");
  const char *sites = strstr(out, "sites that changed");
  const char *classes = strstr(out, "classes that changed");
  cr_assert(sites != NULL && classes != NULL && sites < classes, "diff sections:\n%s", out);
  line_with(sites, "cache_insert;handle_request", line, sizeof line);
  expect_has(line, "+65536 B", "the grown site");
  expect_has(line, "+16 blocks", "the grown site");
  line_with(sites, "session_open;handle_request;main", line, sizeof line);
  expect_has(line, "+32768 B", "the new site");
  expect_has(line, "new", "the new site");
  /* Most growth first; unchanged sites (other addresses, same names) absent. */
  cr_assert_lt(strstr(sites, "cache_insert"), strstr(sites, "session_open"), "order:\n%s", out);
  const char *unchanged = strstr(sites, "parse_header");
  cr_assert(unchanged == NULL || unchanged > classes, "an unchanged site is listed:\n%s", out);
  line_with(classes, "block 4096", line, sizeof line);
  expect_has(line, "+98304 B", "the grown class");
  expect_has(line, "+24 blocks", "the grown class");
  cr_assert_null(strstr(classes, "block 16\n"), "an unchanged class is listed:\n%s", out);
}

/* The kinds of the errors after their count, in the summary and the diff;
 * a report without them (report-a.json) shows the count alone, and a kind
 * this tool does not know is shown as the report names it. */
Test(report_tool, error_kinds) {
  char line[512];
  run_t *r = tool("summary", REPORT_B, NULL);
  expect_ok(r, "summary");
  line_with(r->out, "errors ", line, sizeof line);
  expect_has(line, "errors 1 (double_free 1)", "summary of report-b");
  r = tool("summary", REPORT_A, NULL);
  expect_ok(r, "summary");
  line_with(r->out, "errors ", line, sizeof line);
  cr_assert_null(strchr(line, '('), "report-a has no kinds, yet: %s", line);

  r = tool("diff", REPORT_A, REPORT_B, NULL);
  expect_ok(r, "diff");
  line_with(r->out, "double_free", line, sizeof line);
  expect_has(line, "+1", "the double free in the diff");
  cr_assert_null(strstr(r->out, "overflow"), "a kind neither report has is listed:\n%s", r->out);

  char *text = read_path(REPORT_B);
  char *at = strstr(text, "\"other\":0");
  cr_assert_not_null(at);
  memcpy(at, "\"later\":7", 9);
  r = tool("summary", scratch_file("later.json", text), NULL);
  expect_ok(r, "a kind the tool does not know");
  line_with(r->out, "errors ", line, sizeof line);
  expect_has(line, "(double_free 1, later 7)", "a kind the tool does not know");
  free(text);
  cleanup();
}

/* records_lost and stacks_lost (version 4 of the stats): in the summary
 * and the diff when a report has any; reports from before them load as 0. */
Test(report_tool, lost_records_and_stacks) {
  char line[512];
  char *text = read_path(REPORT_B);
  char *lost = text_splice(text, "\"errors\":1,", "\"errors_by_kind\":",
                           "\"errors\":1,\"records_lost\":3,\"stacks_lost\":1,");
  const char *path = scratch_file("lost.json", lost);
  run_t *r = tool("summary", path, NULL);
  expect_ok(r, "summary");
  line_with(r->out, "lost for want of memory", line, sizeof line);
  expect_has(line, "3 records, 1 stack ", "summary");
  r = tool("summary", REPORT_B, NULL);
  expect_ok(r, "summary");
  cr_assert_null(strstr(r->out, "lost for want"), "a report without losses shows some:\n%s", r->out);

  r = tool("diff", REPORT_A, path, NULL);
  expect_ok(r, "diff");
  line_with(r->out, "records_lost", line, sizeof line);
  expect_has(line, "+3", "records_lost in the diff");
  line_with(r->out, "stacks_lost", line, sizeof line);
  expect_has(line, "+1", "stacks_lost in the diff");
  r = tool("diff", REPORT_A, REPORT_B, NULL);
  expect_ok(r, "diff");
  cr_assert_null(strstr(r->out, "_lost"), "rows of losses neither report has:\n%s", r->out);
  free(lost);
  free(text);
  cleanup();
}

Test(report_tool, map_svg) {
  const char *path = scratch_file("map.svg", NULL);
  run_t *r = tool("map", "-o", path, REPORT_A, NULL);
  expect_ok(r, "map");
  expect_has(r->out, path, "map names its file");
  char *svg = read_path(path);
  cr_assert(strncmp(svg, "<?xml", 5) == 0 || strncmp(svg, "<svg", 4) == 0, "starts with %.40s",
            svg);
  expect_has(svg, "xmlns=\"http://www.w3.org/2000/svg\"", "map");
  size_t len = strlen(svg);
  while (len > 0 && (svg[len - 1] == '\n' || svg[len - 1] == ' ')) len--;
  cr_assert(len >= 6 && strncmp(svg + len - 6, "</svg>", 6) == 0, "does not end with </svg>");
  size_t slots = fixture_slots(REPORT_A, NULL);
  cr_assert_eq(slots, 128, "the fixture has 2 arenas of 64 slots, not %zu slots", slots);
  cr_assert_eq(count_of(svg, "<rect class=\"slot "), slots, "one rect per slot");
  cr_assert_eq(count_of(svg, "<rect class=\"slot records\""), 4, "records slots");
  cr_assert_eq(count_of(svg, "<rect class=\"slot free\""), 4, "free committed slots");
  cr_assert_gt(count_of(svg, "<rect class=\"slot decommitted\""), 0, "decommitted slots");
  expect_has(svg, "class 40, block 4.0 KiB, 40 of 64 blocks live", "a page's tooltip");
  expect_has(svg, "demo-server", "the title");
  expect_has(svg, "largest free range: 1.9 GiB at 0x40901000", "the address space");
  cr_assert_eq(count_of(svg, "<rect class=\"region\""), 11, "one rect per region");
  free(svg);

  r = tool("map", "--pid", "4100", "-o", path, REPORT_A, NULL);
  expect_ok(r, "map --pid 4100");
  svg = read_path(path);
  cr_assert_eq(count_of(svg, "<rect class=\"slot "), fixture_slots(REPORT_A, "\"pid\":4100"));
  free(svg);
  cleanup();
}

Test(report_tool, stdin_and_json_lines) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cat '%s' '%s' | '%s' sites -", REPORT_B, REPORT_A, TSR_REPORT_TOOL);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, p);
  buf[n] = 0;
  int status = pclose(p);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "sites - failed");
  expect_has(buf, "(pid 4242)", "the last of three reports on stdin");

  /* A process killed while appending leaves a torn last line: skipped. */
  snprintf(cmd, sizeof cmd, "(cat '%s'; head -c 300 '%s') | '%s' sites - 2>/dev/null", REPORT_A,
           REPORT_B, TSR_REPORT_TOOL);
  p = popen(cmd, "r");
  cr_assert_not_null(p);
  n = fread(buf, 1, sizeof buf - 1, p);
  buf[n] = 0;
  status = pclose(p);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a torn last line is refused");
  expect_has(buf, "(pid 4242)", "the report before a torn line");
}

Test(report_tool, bad_input) {
  run_t *r = tool("summary", "/nonexistent/report.json", NULL);
  cr_assert_eq(r->code, 2, "missing file: status %d", r->code);
  expect_has(r->child.err, "/nonexistent/report.json", "missing file");
  expect_has(r->child.err, "No such file", "missing file");

  r = tool(scratch_file("bad.json", "{\"schema\": \"tessera-report\", \"version\": 1,,}\n"), NULL);
  cr_assert_eq(r->code, 2, "bad JSON: status %d", r->code);
  expect_has(r->child.err, "not valid JSON: line 1, column", "bad JSON");

  r = tool(scratch_file("empty.json", "\n\n"), NULL);
  cr_assert_eq(r->code, 2, "no report: status %d", r->code);
  expect_has(r->child.err, "no report in", "no report");

  r = tool(scratch_file("array.json", "[1, 2, 3]\n"), NULL);
  cr_assert_eq(r->code, 2, "not a report: status %d", r->code);
  expect_has(r->child.err, "not a tessera report", "a JSON array");

  r = tool(scratch_file("short.json", "{\"schema\": \"tessera-report\", \"version\": 1}\n"), NULL);
  cr_assert_eq(r->code, 2, "wrong schema: status %d", r->code);
  expect_has(r->child.err, "missing", "a report without its members");

  /* The good report with one count made negative (its first digit a minus). */
  char *text = read_path(REPORT_B);
  char *at = strstr(text, "\"allocated\":");
  cr_assert(at != NULL && at[12] >= '1' && at[12] <= '9');
  at[12] = '-';
  r = tool("sites", scratch_file("negative.json", text), NULL);
  free(text);
  cr_assert_eq(r->code, 2, "negative count: status %d", r->code);
  expect_has(r->child.err, "stats.allocated: must be a non-negative integer", "negative count");
  /* and the count of a kind made -1 */
  text = read_path(REPORT_B);
  at = strstr(text, "\"double_free\":1");
  cr_assert_not_null(at);
  size_t len = strlen(text);
  char *minus = malloc(len + 2);
  cr_assert_not_null(minus);
  size_t head = (size_t)(at - text) + 14;
  memcpy(minus, text, head);
  minus[head] = '-';
  memcpy(minus + head + 1, text + head, len - head + 1);
  r = tool("summary", scratch_file("negative-kind.json", minus), NULL);
  free(minus);
  free(text);
  cr_assert_eq(r->code, 2, "negative count of a kind: status %d", r->code);
  expect_has(r->child.err, "stats.errors_by_kind.double_free: must be a non-negative integer", "negative kind");

  /* Not a command, so a file name, and summary takes only one. */
  r = tool("frobnicate", REPORT_A, NULL);
  cr_assert_eq(r->code, 2, "two files for summary: status %d", r->code);
  expect_has(r->child.err, "summary takes one file", "two files for summary");
  r = tool("sites", "--bogus", REPORT_A, NULL);
  cr_assert_eq(r->code, 2, "unknown option: status %d", r->code);
  expect_has(r->child.err, "unknown option --bogus", "unknown option");
  r = tool("diff", REPORT_A, NULL);
  cr_assert_eq(r->code, 2, "diff of one file: status %d", r->code);
  cleanup();
}
