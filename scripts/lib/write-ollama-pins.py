#!/usr/bin/env python3
"""Rewrites the [ollama] section of bundle.toml for one Ollama release.

Usage: write-ollama-pins.py BUNDLE_TOML VERSION BASE_URL SHA256SUM_TXT

Every target keeps the asset it names in bundle.toml today; its sha256 becomes the one the
release's own sha256sum.txt (`find . -type f | xargs sha256sum`, so `HASH  ./NAME`) lists
for that asset. Everything outside the [ollama] section is kept as it is, and the section
is written the same way every time, so running it twice changes nothing. An asset the
release does not list stops it with a one-line reason, before anything is written.
"""
import re
import sys

path, version, base_url, sums_path = sys.argv[1:]
text = open(path, encoding="utf-8").read()
header = re.search(r"^\[ollama\]\n", text, flags=re.M)
if not header:
    sys.exit("bundle.toml has no [ollama] section")
start = header.start()
rest = text[start:]
# The section runs to the next table that is not one of its own.
end_match = re.search(r"^\[(?!ollama[.\]])", rest, flags=re.M)
section = rest[: end_match.start()] if end_match else rest
after = rest[end_match.start():] if end_match else ""

targets = re.findall(
    r'^\[ollama\.targets\.([^\]]+)\]\nasset = "([^"]+)"', section, flags=re.M)
if not targets:
    sys.exit("bundle.toml: the [ollama] section names no targets")

sums = {}
for line in open(sums_path, encoding="utf-8"):
    fields = line.split()
    if len(fields) != 2 or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        continue
    name = fields[1].lstrip("*")
    name = name[2:] if name.startswith("./") else name
    sums[name] = fields[0]

lines = ["[ollama]", f'version = "{version}"', f'base_url = "{base_url}"']
for target, asset in targets:
    if asset not in sums:
        sys.exit(f"Ollama {version}'s sha256sum.txt lists no {asset} (the asset bundle.toml "
                 f"names for {target}): is {version} an Ollama release, and did it rename "
                 f"that asset? Edit its asset in bundle.toml to the new name")
    lines += ["", f"[ollama.targets.{target}]", f'asset = "{asset}"', f'sha256 = "{sums[asset]}"']
section_text = "\n".join(lines) + "\n"
if after:
    section_text += "\n"
open(path, "w", encoding="utf-8").write(text[:start] + section_text + after)
