/* elf_note.h: the GNU build-id among an ELF object's notes, for
 * symbols_elf.c (is this file the image that is loaded?) and
 * unwind_eh.c (may the unwind tables be read from this file?).
 * Private to alloc/os/.
 */
#ifndef TSR_ELF_NOTE_H
#define TSR_ELF_NOTE_H

#include <elf.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline size_t tsri_elf_round(size_t n, size_t align) { return (n + align - 1) & ~(align - 1); }

/* The descriptor of the GNU build-id note among the notes [p, p + n),
 * aligned to align (4 or 8): its first byte, with its length in *len;
 * NULL when there is none. */
static inline const uint8_t *tsri_elf_build_id(const uint8_t *p, size_t n, size_t align, size_t *len) {
  size_t off = 0;
  while (n - off >= sizeof(Elf64_Nhdr)) {
    Elf64_Nhdr h;
    memcpy(&h, p + off, sizeof h);
    off += sizeof h;
    size_t name = tsri_elf_round(h.n_namesz, align);
    if (name > n - off || h.n_descsz > n - off - name) break;
    if (h.n_type == NT_GNU_BUILD_ID && h.n_namesz == 4 && memcmp(p + off, "GNU", 4) == 0) {
      *len = h.n_descsz;
      return p + off + name;
    }
    size_t desc = tsri_elf_round(h.n_descsz, align);
    if (desc > n - off - name) break;
    off += name + desc;
  }
  return NULL;
}

#endif /* TSR_ELF_NOTE_H */
