#!/usr/bin/env python3
"""Reproducible benchmark corpus for Hort and the engines it is compared with.

Writes, under OUT:
  tree/   a file tree: many small text files (source-code-like), medium semi-compressible
          files, a large incompressible file and a large log file;
  dumps/  a series of database dumps (gen0.sql ... genN.sql): each generation updates a
          growing set of hot rows, inserts a few rows and appends 1 % new rows.
Everything derives from a fixed seed, so every run and machine gets identical bytes.

usage: corpus.py OUT [--scale N]   (scale 1 = about 0.5 GiB tree + 6 x 80 MiB dumps)
"""
import argparse
import os
import random

WORDS = ("fn let mut match struct impl return self error value index pack chunk tree "
         "snapshot backup restore stream result option string vector table user account "
         "balance created updated select insert where from order group limit").split()


def text(rng, size):
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
        line = "    " * rng.randint(0, 3) + line + ";\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def tree(out, scale, rng):
    # ~120 MiB of small files in nested directories.
    for d in range(40 * scale):
        for f in range(150):
            write(f"{out}/src/mod{d:03}/sub{f % 7}/file{f:03}.rs", text(rng, rng.randint(200, 40000)))
    # ~150 MiB of medium files: half text, half random (like compressed assets).
    for i in range(30 * scale):
        size = rng.randint(1, 9) * 1024 * 1024
        body = text(rng, size // 2) + rng.randbytes(size - size // 2)
        write(f"{out}/assets/blob{i:03}.bin", body)
    # A large incompressible file (like a disk image or media) and a large log.
    write(f"{out}/images/disk.img", rng.randbytes(128 * 1024 * 1024 * scale))
    log = []
    for i in range(1_200_000 * scale):
        log.append(f"2026-11-24T10:{i // 60000 % 60:02}:{i // 1000 % 60:02}.{i % 1000:03}Z INFO "
                   f"request id={i} path=/api/v1/items/{i % 977} status=200 ms={i % 97}\n")
    write(f"{out}/logs/app.log", "".join(log).encode())


def dumps(out, scale, rng, generations=6):
    base = 1_000_000 * scale
    hot, inserted = set(), set()
    for g in range(generations):
        rows = base + g * base // 100
        hot.update(rng.randrange(rows) for _ in range(rows // 20000))
        inserted.update(rng.randrange(rows) for _ in range(rows // 100000))
        lines = []
        for i in range(rows):
            balance = (i * 31 + g) % 100000 if i in hot else (i * 7) % 1000
            lines.append(f"{i}\tuser{i}@example.com\t{balance}\t2026-11-{i % 28 + 1:02} 10:{i % 60:02}:00\t"
                         f"some filler text for row {i}\n")
            if i in inserted:
                lines.append(f"{i}x\tnew@example.com\t{g}\t2026-11-24\tinserted\n")
        write(f"{out}/dumps/gen{g}.sql", "".join(lines).encode())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args()
    tree(os.path.join(args.out, "tree"), args.scale, random.Random(20261124))
    dumps(args.out, args.scale, random.Random(20261125))


if __name__ == "__main__":
    main()
