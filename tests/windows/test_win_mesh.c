/* test_win_mesh.c: meshing on Windows, run with TESSERA_MESH=on.  tessera
 * does not mesh on Windows yet (docs/windows.md, "Meshing"): from the
 * start, and after a collect over sparse pages that Linux would mesh,
 * the state must read unsupported, nothing is meshed, every surviving
 * block keeps its contents, and the reports give the reason the OS layer
 * found.  The test
 * finds that reason for itself by asking the OS the same question
 * (kernelbase.dll's placeholder functions, and one placeholder
 * reservation), so that it holds on Windows before 10 1803, on later
 * Windows and under wine (8.0 refuses MEM_RESERVE_PLACEHOLDER). */
#include "win_test.h"

#include <stdint.h>
#include <windows.h>

#include <tessera.h>

#define BLOCKS 20000
#define BLOCK_SIZE 64
#define KEEP_EVERY 10   /* one block in ten survives: sparse pages */

typedef PVOID(WINAPI *valloc2_t)(HANDLE process, PVOID base, SIZE_T size, ULONG type, ULONG prot,
                                 void *params, ULONG count);

/* The reason the report should give, by the OS's own answers. */
static const char *expected_why(void) {
  HMODULE kb = GetModuleHandleW(L"kernelbase.dll");
  valloc2_t valloc2 = kb != NULL ? (valloc2_t)(void (*)(void))GetProcAddress(kb, "VirtualAlloc2") : NULL;
  if (valloc2 == NULL || GetProcAddress(kb, "MapViewOfFile3") == NULL ||
      GetProcAddress(kb, "UnmapViewOfFile2") == NULL)
    return "placeholders (VirtualAlloc2, MapViewOfFile3) not available: the OS lacks them";
  void *p = valloc2(NULL, NULL, 65536, MEM_RESERVE | 0x00040000u /* MEM_RESERVE_PLACEHOLDER */,
                    PAGE_NOACCESS, NULL, 0);
  DWORD err = p == NULL ? GetLastError() : 0;
  printf("  VirtualAlloc2(MEM_RESERVE_PLACEHOLDER): %s, error %lu\n", p != NULL ? "works" : "fails", err);
  if (err == ERROR_INVALID_PARAMETER)
    return "placeholders (VirtualAlloc2, MapViewOfFile3) not available: VirtualAlloc2 refuses "
           "MEM_RESERVE_PLACEHOLDER";
  if (p != NULL) VirtualFree(p, 0, MEM_RELEASE);
  return "not built for Windows yet (the OS has placeholders";
}

typedef struct text_s {
  char *buf;
  size_t len, cap;
} text_t;

static void collect(const char *text, size_t len, void *arg) {
  text_t *t = arg;
  if (t->len + len + 1 > t->cap) {
    size_t cap = (t->len + len + 1) * 2;
    char *grown = realloc(t->buf, cap);
    if (grown == NULL) return;
    t->buf = grown;
    t->cap = cap;
  }
  memcpy(t->buf + t->len, text, len);
  t->len += len;
  t->buf[t->len] = 0;
}

static char *report(tsr_format_t format) {
  text_t t = { NULL, 0, 0 };
  if (tsr_report(format, collect, &t) != 0 || t.buf == NULL) {
    free(t.buf);
    return NULL;
  }
  return t.buf;
}

static unsigned char *blocks[BLOCKS];

/* Before any pass has tried to start meshing, the state already says so. */
static void unsupported_from_start(void) {
  tsr_pins_t t;
  tsr_pins(&t, NULL, 0);
  CHECK_MSG(t.mesh_state == TSR_MESH_UNSUPPORTED, "meshing state %u", t.mesh_state);
  CHECK(t.mesh_passes == 0);
}

/* Sparse pages of one class, collected: Linux would mesh them. */
static void unsupported_after_collect(void) {
  for (size_t i = 0; i < BLOCKS; i++) {
    blocks[i] = tsr_malloc(BLOCK_SIZE);
    CHECK(blocks[i] != NULL);
    memset(blocks[i], (int)(i % 251), BLOCK_SIZE);
  }
  for (size_t i = 0; i < BLOCKS; i++) {
    if (i % KEEP_EVERY == 0) continue;
    tsr_free(blocks[i]);
    blocks[i] = NULL;
  }
  tsr_collect();
  tsr_pins_t t;
  tsr_pins(&t, NULL, 0);
  CHECK_MSG(t.pages > 0, "no sparse pages to mesh");
  CHECK_MSG(t.mesh_state == TSR_MESH_UNSUPPORTED, "meshing state %u", t.mesh_state);
  CHECK(t.meshes == 0 && t.meshed_pages == 0 && t.mesh_saved == 0);
  for (size_t i = 0; i < BLOCKS; i += KEEP_EVERY)
    for (size_t j = 0; j < BLOCK_SIZE; j++)
      CHECK_MSG(blocks[i][j] == (unsigned char)(i % 251), "block %zu byte %zu changed", i, j);
}

/* The report in format holds want; anchor names where its meshing part
 * begins, shown when it does not. */
static void report_holds(tsr_format_t format, const char *want, const char *anchor) {
  char *text = report(format);
  CHECK(text != NULL);
  const char *at = strstr(text, anchor);
  CHECK_MSG(strstr(text, want) != NULL, "no '%s' in the report; its meshing part: %.300s", want,
            at != NULL ? at : "(none)");
  free(text);
}

/* The text, JSON and OpenMetrics reports say unsupported, the first two
 * with the reason. */
static void reports_say_why(void) {
  const char *why = expected_why();
  printf("  expected reason: %s\n", why);
  char want[512];
  snprintf(want, sizeof want, "  meshing: unsupported by this OS: %s", why);
  report_holds(TSR_FORMAT_TEXT, want, "  meshing: ");
  snprintf(want, sizeof want, "\"mesh\":{\"state\":\"unsupported\",\"why\":\"%s", why);
  report_holds(TSR_FORMAT_JSON, want, "\"mesh\":");
  report_holds(TSR_FORMAT_OPENMETRICS, "\ntessera_mesh_state{tessera_mesh_state=\"unsupported\"} 1\n",
               "tessera_mesh_state");
  for (size_t i = 0; i < BLOCKS; i += KEEP_EVERY) tsr_free(blocks[i]);
}

WT_MAIN(WT_CASE(unsupported_from_start), WT_CASE(unsupported_after_collect), WT_CASE(reports_say_why))
