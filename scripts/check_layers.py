#!/usr/bin/env python3
"""check_layers.py: hold tessera's allocator to its layers (docs/design.md).

The allocator is four layers, a folder each under alloc/, and calls go one
way only:

    report  ->  track  ->  core  ->  os

A file may name what its own layer and the layers below it define, never
what a layer above defines, with one exception: the core calls tracking
through the hooks declared in alloc/core/hooks.h (tsri_hook_*), and through
nothing else.  Checked three ways:

  objects   every symbol an object file of the library leaves undefined
            (nm -u) and another of its objects defines: the defining
            object's layer must not be above the referring one's, unless
            the reference is a core object's to a hook of hooks.h
  includes  every #include "..." of alloc/: no header of a higher layer
            (the core's hooks.h is the core's own)
  sizes     no source file of alloc/ over 800 lines (STYLE.md)
  picture   every .c file of alloc/ named in docs/design.md's picture of
            the layers (by name, or by a pattern such as unwind*.c)

Usage:
  check_layers.py --source-dir DIR [--nm NM] [--object LAYER:PATH ...] OBJECT...

OBJECTs take their layer from their path (.../alloc/<layer>/...); --object
names the layer of one explicitly (the test of this check adds a core object
that calls the report layer, and expects a failure).  Exit status 0 when the
layers hold, 1 with one line per breach otherwise.
"""
import argparse
import fnmatch
import os
import re
import subprocess
import sys

LAYERS = ["os", "core", "track", "report"]   # bottom to top
RANK = {name: i for i, name in enumerate(LAYERS)}
MAX_LINES = 800


def layer_of_path(path):
    parts = os.path.normpath(path).split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i - 1] == "alloc" and parts[i] in RANK:
            return parts[i]
    return None


def hooks_declared(source_dir):
    """The hooks hooks.h declares: tsri_hidden functions and static inline
    ones (a name met only in a comment is no hook)."""
    text = open(os.path.join(source_dir, "alloc", "core", "hooks.h"), encoding="utf-8").read()
    decl = re.compile(r"^(?:tsri_hidden|static inline)\b[^;{]*?\b(tsri_hook_\w+)\s*\(", re.M)
    return set(decl.findall(text))


def nm_symbols(nm, path):
    """(defined, undefined) global symbol names of one object file."""
    out = subprocess.run([nm, "-g", path], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[-2] in ("U", "w", "v"):   # weak references count
            undefined.add(fields[-1])
        elif len(fields) >= 3:
            defined.add(fields[-1])
    return defined, undefined


def check_objects(nm, objects, hooks):
    breaches = []
    owner = {}
    symbols = {}
    for layer, path in objects:
        defined, undefined = nm_symbols(nm, path)
        symbols[path] = undefined
        for name in defined:
            owner[name] = (layer, path)
    for layer, path in objects:
        for name in sorted(symbols[path]):
            if name not in owner:
                continue
            their_layer, their_path = owner[name]
            if RANK[their_layer] <= RANK[layer]:
                continue
            if layer == "core" and their_layer == "track" and name in hooks:
                continue
            breaches.append(f"{os.path.basename(path)} ({layer}) calls up into {their_layer}: "
                            f"{name}, defined in {os.path.basename(their_path)}"
                            + (" (the core may call tracking only through core/hooks.h)"
                               if layer == "core" else ""))
    return breaches


INCLUDE = re.compile(r'^\s*#\s*include\s+[<"]([^">]+)[">]')


def check_sources(source_dir):
    breaches = []
    alloc = os.path.join(source_dir, "alloc")
    for root, _, files in os.walk(alloc):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, source_dir)
            layer = layer_of_path(path)
            if layer is None:
                breaches.append(f"{rel}: outside the layers' folders (alloc/{{{','.join(LAYERS)}}}/)")
                continue
            lines = open(path, encoding="utf-8").read().splitlines()
            if len(lines) > MAX_LINES:
                breaches.append(f"{rel}: {len(lines)} lines, over {MAX_LINES}; split it along its concerns")
            for n, line in enumerate(lines, 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                target = m.group(1)
                here = os.path.join(root, target)
                if os.path.exists(here):
                    their = layer_of_path(here)
                elif os.path.exists(os.path.join(alloc, target)):
                    their = layer_of_path(os.path.join(alloc, target))
                else:
                    continue   # the public header or a system one
                if their is not None and RANK[their] > RANK[layer]:
                    breaches.append(f"{rel}:{n}: includes {target}, a header of {their}, "
                                    f"above {layer}")
    return breaches


def check_picture(source_dir):
    """Every .c file of alloc/ is named in the picture of docs/design.md."""
    text = open(os.path.join(source_dir, "docs", "design.md"), encoding="utf-8").read()
    start = text.find("## Layers")
    picture = text[start:text.find("```", text.find("```", start) + 3)] if start >= 0 else ""
    patterns = set(re.findall(r"[\w*]+\.c\b", picture))
    breaches = []
    for root, _, files in os.walk(os.path.join(source_dir, "alloc")):
        for f in sorted(files):
            if f.endswith(".c") and not any(fnmatch.fnmatch(f, p) for p in patterns):
                rel = os.path.relpath(os.path.join(root, f), source_dir)
                breaches.append(f"{rel}: not in the picture of the layers in docs/design.md")
    return breaches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--object", action="append", default=[], metavar="LAYER:PATH")
    ap.add_argument("objects", nargs="*")
    args = ap.parse_args()

    objects = []
    for path in args.objects:
        layer = layer_of_path(path)
        if layer is None:
            sys.exit(f"check_layers.py: {path}: not under alloc/<layer>/")
        objects.append((layer, path))
    for spec in args.object:
        layer, _, path = spec.partition(":")
        if layer not in RANK:
            sys.exit(f"check_layers.py: {spec}: the layer is one of {', '.join(LAYERS)}")
        objects.append((layer, path))

    hooks = hooks_declared(args.source_dir)
    breaches = (check_objects(args.nm, objects, hooks) + check_sources(args.source_dir)
                + check_picture(args.source_dir))
    for name in LAYERS:
        if not any(layer == name for layer, _ in objects):
            breaches.append(f"no object of the {name} layer was given: the check would prove nothing")
    for b in breaches:
        print(f"layering: {b}")
    counts = {name: sum(1 for layer, _ in objects if layer == name) for name in LAYERS}
    print(f"check_layers: {len(objects)} objects ("
          + ", ".join(f"{counts[n]} {n}" for n in reversed(LAYERS))
          + f"), {len(hooks)} hooks; {len(breaches)} breach(es)")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
