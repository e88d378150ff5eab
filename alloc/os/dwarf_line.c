/* dwarf_line.c: the source line of a code address, from the line-number
 * programs in .debug_line, DWARF versions 2 to 5 (dwarf_line.h).
 *
 * Each unit of .debug_line is a header (opcode parameters, then the
 * directory and file tables) and a program for a small state machine whose
 * rows give file and line from each row's address up to the next row's;
 * DW_LNE_end_sequence closes a run of rows over one contiguous range.  A
 * lookup runs the units in order until a sequence covers the address, so
 * it costs one pass over .debug_line at worst; a report names a few hundred
 * frames at most, and keeping no index means nothing to allocate.  The
 * file table is read a second time, for the one index the matching row
 * names.
 *
 * Not read: .debug_info, so the compilation directory of a DWARF 2-4 unit
 * (its directory 0) is unknown and names relative to it stay relative;
 * DW_LNE_define_file; and the DW_FORM_strx forms, whose strings need
 * .debug_str_offsets and the unit's base from .debug_info.
 */
#include "dwarf_line.h"
#include "dwarf_read.h"

#include <limits.h>
#include <string.h>

/* The codes DWARF 5 gives these (sections 6.2.5.2, 6.2.5.3, 6.2.4.1 and
 * 7.5.6); DWARF 2-4 use the same ones where they have them. */
enum {
  DW_LNS_copy = 1,
  DW_LNS_advance_pc = 2,
  DW_LNS_advance_line = 3,
  DW_LNS_set_file = 4,
  DW_LNS_const_add_pc = 8,
  DW_LNS_fixed_advance_pc = 9,
};
enum { DW_LNE_end_sequence = 1, DW_LNE_set_address = 2 };
enum { DW_LNCT_path = 1, DW_LNCT_directory_index = 2 };
enum {
  DW_FORM_block2 = 0x03,
  DW_FORM_block4 = 0x04,
  DW_FORM_data2 = 0x05,
  DW_FORM_data4 = 0x06,
  DW_FORM_data8 = 0x07,
  DW_FORM_string = 0x08,
  DW_FORM_block = 0x09,
  DW_FORM_block1 = 0x0a,
  DW_FORM_data1 = 0x0b,
  DW_FORM_sdata = 0x0d,
  DW_FORM_strp = 0x0e,
  DW_FORM_udata = 0x0f,
  DW_FORM_strx = 0x1a,
  DW_FORM_data16 = 0x1e,
  DW_FORM_line_strp = 0x1f,
  DW_FORM_strx1 = 0x25,
  DW_FORM_strx2 = 0x26,
  DW_FORM_strx3 = 0x27,
  DW_FORM_strx4 = 0x28,
};

/* ------------------------------------------------------------------------
 * Reading bytes
 * ---------------------------------------------------------------------- */

/* The NUL-terminated string at the cursor, or NULL when it runs past the
 * end. */
static const char *dw_cstr(tsri_dw_reader_t *r) {
  if (r->bad) return NULL;
  const uint8_t *nul = memchr(r->p, 0, tsri_dw_left(r));
  if (nul == NULL) {
    tsri_dw_skip(r, tsri_dw_left(r) + 1);
    return NULL;
  }
  const char *s = (const char *)r->p;
  r->p = nul + 1;
  return s;
}

/* The string at offset off of a string section, or NULL when off is
 * outside it or the string has no terminator inside it. */
static const char *dw_section_str(const uint8_t *sec, size_t size, uint64_t off) {
  if (sec == NULL || off >= size) return NULL;
  if (memchr(sec + off, 0, size - off) == NULL) return NULL;
  return (const char *)sec + off;
}

/* ------------------------------------------------------------------------
 * Unit headers and the state machine
 * ---------------------------------------------------------------------- */

typedef struct dw_unit_s {
  unsigned version;               /* 2 to 5 */
  unsigned offset_size;           /* 4 (32-bit DWARF) or 8 (64-bit DWARF) */
  unsigned min_inst;              /* minimum_instruction_length, bytes */
  unsigned max_ops;               /* maximum_operations_per_instruction; 1 but on VLIW */
  int line_base;
  unsigned line_range;            /* > 0 */
  unsigned opcode_base;           /* >= 1; opcodes from here on are special */
  const uint8_t *opcode_lengths;  /* operand count of standard opcode i at [i - 1] */
  tsri_dw_reader_t tables;             /* the directory and file tables */
  tsri_dw_reader_t program;            /* the line-number program */
} dw_unit_t;

/* Read the header of the unit at r and move r past the unit.  false when
 * this unit cannot be used; r->bad when no later one can be found either. */
static bool dw_unit_read(tsri_dw_reader_t *r, dw_unit_t *u) {
  uint64_t len = tsri_dw_fixed(r, 4);
  u->offset_size = 4;
  if (len == 0xffffffffu) {
    len = tsri_dw_fixed(r, 8);
    u->offset_size = 8;
  } else if (len >= 0xfffffff0u) {
    r->bad = true;  /* reserved lengths: the rest cannot be delimited */
  }
  if (r->bad || len > tsri_dw_left(r)) {
    r->bad = true;
    return false;
  }
  tsri_dw_reader_t h = { r->p, r->p + len, false };
  r->p += len;

  u->version = (unsigned)tsri_dw_fixed(&h, 2);
  if (u->version < 2 || u->version > 5) return false;
  if (u->version >= 5) tsri_dw_skip(&h, 2);  /* address_size, segment_selector_size */
  uint64_t header_len = tsri_dw_fixed(&h, u->offset_size);
  if (h.bad || header_len > tsri_dw_left(&h)) return false;
  u->program = (tsri_dw_reader_t){ h.p + header_len, h.end, false };
  h.end = h.p + header_len;

  u->min_inst = (unsigned)tsri_dw_fixed(&h, 1);
  u->max_ops = u->version >= 4 ? (unsigned)tsri_dw_fixed(&h, 1) : 1;
  if (u->max_ops == 0) u->max_ops = 1;
  tsri_dw_skip(&h, 1);  /* default_is_stmt: a lookup takes every row */
  unsigned base = (unsigned)tsri_dw_fixed(&h, 1);
  u->line_base = base < 128 ? (int)base : (int)base - 256;
  u->line_range = (unsigned)tsri_dw_fixed(&h, 1);
  u->opcode_base = (unsigned)tsri_dw_fixed(&h, 1);
  u->opcode_lengths = h.p;
  if (u->opcode_base > 0) tsri_dw_skip(&h, u->opcode_base - 1);
  u->tables = h;
  return !h.bad && u->line_range != 0 && u->opcode_base != 0;
}

typedef struct dw_row_s {
  uint64_t addr, file, line;
} dw_row_t;

/* Move the address by `ops` operations (DWARF 5, 6.2.5.1). */
static void dw_advance(const dw_unit_t *u, dw_row_t *row, uint64_t *op_index, uint64_t ops) {
  if (u->max_ops == 1) {
    row->addr += u->min_inst * ops;
    return;
  }
  uint64_t total = *op_index + ops;
  row->addr += u->min_inst * (total / u->max_ops);
  *op_index = total % u->max_ops;
}

/* Run u's program.  true, with the covering row in *hit, when a row's
 * range [its address, the next row's) within one sequence holds vaddr; of
 * several rows at one address the last counts, as its range is the one
 * that is not empty. */
static bool dw_unit_find(const dw_unit_t *u, uint64_t vaddr, dw_row_t *hit) {
  const dw_row_t initial = { 0, 1, 1 };
  tsri_dw_reader_t r = u->program;
  dw_row_t cur = initial, prev = initial;
  uint64_t op_index = 0, seq_start = 0;
  bool have_prev = false;
  while (!r.bad && r.p < r.end) {
    unsigned op = *r.p++;
    bool emit = false, end = false;
    if (op >= u->opcode_base) {
      unsigned adj = op - u->opcode_base;
      dw_advance(u, &cur, &op_index, adj / u->line_range);
      cur.line += (uint64_t)(int64_t)(u->line_base + (int)(adj % u->line_range));
      emit = true;
    } else if (op == 0) {
      uint64_t len = tsri_dw_uleb(&r);
      if (len == 0 || len > tsri_dw_left(&r)) break;
      tsri_dw_reader_t x = { r.p, r.p + len, false };
      r.p += len;
      unsigned sub = (unsigned)tsri_dw_fixed(&x, 1);
      if (sub == DW_LNE_end_sequence) {
        emit = end = true;
      } else if (sub == DW_LNE_set_address) {
        cur.addr = tsri_dw_fixed(&x, len - 1 < 8 ? (unsigned)(len - 1) : 8);
        op_index = 0;
      }
    } else if (op == DW_LNS_copy) {
      emit = true;
    } else if (op == DW_LNS_advance_pc) {
      dw_advance(u, &cur, &op_index, tsri_dw_uleb(&r));
    } else if (op == DW_LNS_advance_line) {
      cur.line += tsri_dw_sleb(&r);
    } else if (op == DW_LNS_set_file) {
      cur.file = tsri_dw_uleb(&r);
    } else if (op == DW_LNS_const_add_pc) {
      dw_advance(u, &cur, &op_index, (255 - u->opcode_base) / u->line_range);
    } else if (op == DW_LNS_fixed_advance_pc) {
      cur.addr += tsri_dw_fixed(&r, 2);
      op_index = 0;
    } else {
      /* column, is_stmt, basic block, prologue and epilogue marks, ISA and
       * opcodes from later versions: skip the operands the header counts */
      for (unsigned i = u->opcode_lengths[op - 1]; i > 0; i--) tsri_dw_uleb(&r);
    }
    if (!emit) continue;
    /* A sequence that starts at address 0 belongs to code the linker threw
     * away (its relocations resolve to 0); in a linked module address 0 is
     * the ELF header, never code. */
    if (have_prev && seq_start != 0 && prev.addr <= vaddr && vaddr < cur.addr) {
      *hit = prev;
      return true;
    }
    if (end) {
      cur = initial;
      op_index = 0;
      have_prev = false;
    } else {
      if (!have_prev) seq_start = cur.addr;
      prev = cur;
      have_prev = true;
    }
  }
  return false;
}

/* ------------------------------------------------------------------------
 * Directory and file tables
 * ---------------------------------------------------------------------- */

/* Read one attribute value of the given form: a string into *s (NULL when
 * it cannot be resolved), a number into *v.  false for a form we cannot
 * size, which also marks r bad: nothing after it can be found. */
static bool dw_form(tsri_dw_reader_t *r, uint64_t form, const dw_unit_t *u, const tsri_dwarf_t *d,
                    const char **s, uint64_t *v) {
  switch (form) {
  case DW_FORM_string: *s = dw_cstr(r); break;
  case DW_FORM_line_strp:
    *s = dw_section_str(d->line_str, d->line_str_size, tsri_dw_fixed(r, u->offset_size));
    break;
  case DW_FORM_strp: *s = dw_section_str(d->str, d->str_size, tsri_dw_fixed(r, u->offset_size)); break;
  case DW_FORM_udata: *v = tsri_dw_uleb(r); break;
  case DW_FORM_sdata: *v = tsri_dw_sleb(r); break;
  case DW_FORM_data1: *v = tsri_dw_fixed(r, 1); break;
  case DW_FORM_data2: *v = tsri_dw_fixed(r, 2); break;
  case DW_FORM_data4: *v = tsri_dw_fixed(r, 4); break;
  case DW_FORM_data8: *v = tsri_dw_fixed(r, 8); break;
  case DW_FORM_data16: tsri_dw_skip(r, 16); break;
  case DW_FORM_block: tsri_dw_skip(r, tsri_dw_uleb(r)); break;
  case DW_FORM_block1: tsri_dw_skip(r, tsri_dw_fixed(r, 1)); break;
  case DW_FORM_block2: tsri_dw_skip(r, tsri_dw_fixed(r, 2)); break;
  case DW_FORM_block4: tsri_dw_skip(r, tsri_dw_fixed(r, 4)); break;
  case DW_FORM_strx: tsri_dw_uleb(r); break;
  case DW_FORM_strx1: tsri_dw_skip(r, 1); break;
  case DW_FORM_strx2: tsri_dw_skip(r, 2); break;
  case DW_FORM_strx3: tsri_dw_skip(r, 3); break;
  case DW_FORM_strx4: tsri_dw_skip(r, 4); break;
  default: r->bad = true; return false;
  }
  return !r->bad;
}

/* A DWARF 5 entry format: `count` (content type, form) pairs at `pairs`. */
typedef struct dw_format_s {
  tsri_dw_reader_t pairs;
  unsigned count;
} dw_format_t;

/* Read a format description at r and move r past it. */
static dw_format_t dw_format_read(tsri_dw_reader_t *r) {
  dw_format_t f;
  f.count = (unsigned)tsri_dw_fixed(r, 1);
  f.pairs = *r;
  for (unsigned i = 0; i < f.count; i++) {
    tsri_dw_uleb(r);
    tsri_dw_uleb(r);
  }
  return f;
}

/* Read entry `index` of the DWARF 5 table at r (a count, then the entries
 * as f lays them out), leaving r past the table when index is past it.
 * Its path in *path, its directory index in *dir. */
static bool dw_table5(tsri_dw_reader_t *r, dw_format_t f, uint64_t index, const dw_unit_t *u,
                      const tsri_dwarf_t *d, const char **path, uint64_t *dir) {
  uint64_t count = tsri_dw_uleb(r);
  /* an entry of no fields takes no bytes: without this the count alone,
   * read from the file, would bound the loop */
  if (f.count == 0) return false;
  for (uint64_t i = 0; i < count && !r->bad; i++) {
    const char *p = NULL;
    uint64_t x = 0;
    tsri_dw_reader_t fmt = f.pairs;
    for (unsigned k = 0; k < f.count; k++) {
      uint64_t type = tsri_dw_uleb(&fmt), form = tsri_dw_uleb(&fmt);
      const char *s = NULL;
      uint64_t v = 0;
      if (fmt.bad || !dw_form(r, form, u, d, &s, &v)) return false;
      if (type == DW_LNCT_path) p = s;
      if (type == DW_LNCT_directory_index) x = v;
    }
    if (i == index) {
      *path = p;
      *dir = x;
      return true;
    }
  }
  return false;
}

/* DWARF 5: file `index` (from 0) and its directory, both from the tables;
 * directory 0 is the compilation directory. */
static bool dw_file5(const dw_unit_t *u, const tsri_dwarf_t *d, uint64_t index, const char **name,
                     const char **dir) {
  tsri_dw_reader_t r = u->tables;
  dw_format_t dir_format = dw_format_read(&r);
  tsri_dw_reader_t dirs = r;
  const char *unused;
  uint64_t dir_index = 0;
  dw_table5(&r, dir_format, UINT64_MAX, u, d, &unused, &dir_index);
  if (r.bad) return false;
  dw_format_t file_format = dw_format_read(&r);
  if (!dw_table5(&r, file_format, index, u, d, name, &dir_index)) return false;
  uint64_t unused_index;
  if (!dw_table5(&dirs, dir_format, dir_index, u, d, dir, &unused_index)) *dir = NULL;
  return true;
}

/* DWARF 2-4: file `index` (from 1) and its directory (from 1; 0 is the
 * compilation directory, which only .debug_info names). */
static bool dw_file4(const dw_unit_t *u, uint64_t index, const char **name, const char **dir) {
  tsri_dw_reader_t r = u->tables;
  tsri_dw_reader_t dirs = r;
  for (;;) {
    const char *s = dw_cstr(&r);
    if (s == NULL) return false;
    if (*s == 0) break;
  }
  for (uint64_t i = 1;; i++) {
    const char *s = dw_cstr(&r);
    if (s == NULL || *s == 0) return false;
    uint64_t dir_index = tsri_dw_uleb(&r);
    tsri_dw_uleb(&r);  /* modification time */
    tsri_dw_uleb(&r);  /* length */
    if (r.bad) return false;
    if (i != index) continue;
    *name = s;
    *dir = NULL;
    for (uint64_t k = 1; k <= dir_index; k++) {
      const char *dname = dw_cstr(&dirs);
      if (dname == NULL || *dname == 0) break;
      if (k == dir_index) *dir = dname;
    }
    return true;
  }
}

/* dir "/" name into out, or name alone when it is absolute, there is no
 * directory, or the two do not fit: a short name beats a cut path. */
static void dw_join(char *out, size_t size, const char *dir, const char *name) {
  size_t nlen = strlen(name);
  if (name[0] != '/' && dir != NULL && dir[0] != 0) {
    size_t dlen = strlen(dir);
    size_t sep = dir[dlen - 1] == '/' ? 0 : 1;
    if (dlen + sep + nlen < size) {
      memcpy(out, dir, dlen);
      if (sep) out[dlen] = '/';
      memcpy(out + dlen + sep, name, nlen + 1);
      return;
    }
  }
  if (nlen >= size) nlen = size - 1;
  memcpy(out, name, nlen);
  out[nlen] = 0;
}

bool tsri_dwarf_find_line(const tsri_dwarf_t *d, uint64_t vaddr, char *file, size_t file_size,
                          unsigned *line) {
  if (file_size == 0) return false;
  file[0] = 0;
  *line = 0;
  if (d->line == NULL) return false;
  tsri_dw_reader_t r = { d->line, d->line + d->line_size, false };
  while (!r.bad && r.p < r.end) {
    dw_unit_t u;
    dw_row_t hit;
    if (!dw_unit_read(&r, &u) || !dw_unit_find(&u, vaddr, &hit)) continue;
    const char *name = NULL, *dir = NULL;
    bool known = u.version >= 5 ? dw_file5(&u, d, hit.file, &name, &dir)
                                : dw_file4(&u, hit.file, &name, &dir);
    if (known && name != NULL) dw_join(file, file_size, dir, name);
    *line = hit.line <= UINT_MAX ? (unsigned)hit.line : 0;
    return true;
  }
  return false;
}
