/* dwarf_line.h: source file and line of a code address, from DWARF line
 * tables.  Private to alloc/os/: symbols_elf.c finds the sections in a
 * mapped ELF file, dwarf_line.c reads them.  Nothing here allocates.
 */
#ifndef TSR_DWARF_LINE_H
#define TSR_DWARF_LINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os.h"

/* The sections a line lookup reads, each as it lies in the mapped file
 * (uncompressed); a NULL pointer or size 0 where the file has none. */
typedef struct tsri_dwarf_s {
  const uint8_t *line;       /* .debug_line: the line-number programs */
  size_t line_size;
  const uint8_t *line_str;   /* .debug_line_str: DW_FORM_line_strp targets (DWARF 5) */
  size_t line_str_size;
  const uint8_t *str;        /* .debug_str: DW_FORM_strp targets */
  size_t str_size;
} tsri_dwarf_t;

/* Find the row of the line tables in d that covers vaddr (an address as
 * the file's program headers number them) and write its source file,
 * joined with its directory where that fits in file_size bytes, to file
 * and its line to *line.  true when a row covers vaddr (file stays "" if
 * the row's file entry cannot be read); false, with file "" and *line 0,
 * when none does or the tables cannot be read.  Every read is checked
 * against the section sizes: malformed input gives false or a wrong
 * answer, never a read outside the sections. */
tsri_hidden bool tsri_dwarf_find_line(const tsri_dwarf_t *d, uint64_t vaddr, char *file,
                                      size_t file_size, unsigned *line);

#endif /* TSR_DWARF_LINE_H */
