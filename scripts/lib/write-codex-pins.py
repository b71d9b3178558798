#!/usr/bin/env python3
"""Rewrites the [codex] section of bundle.toml for one Codex release on the npm registry.

Usage: write-codex-pins.py BUNDLE_TOML VERSION TARGET=SUFFIX=INTEGRITY...

Each TARGET (a Rust target triple codex-oss builds for) gets the npm platform package
@openai/codex@VERSION-SUFFIX, pinned by the registry's integrity (sha512). Everything
outside the [codex] section, and its min_ollama, is kept as it is; the section is written
the same way every time, so running it twice changes nothing.
"""
import re
import sys

path, version, *pins = sys.argv[1:]
text = open(path, encoding="utf-8").read()
start = text.index("\n[codex]\n") + 1
rest = text[start:]
# The [codex] section runs to the next section that is not one of its own tables.
end_match = re.search(r"^\[(?!codex[.\]])", rest, flags=re.M)
section = rest[: end_match.start()] if end_match else rest
after = rest[end_match.start():] if end_match else ""
min_ollama = re.search(r'^min_ollama = "([^"]+)"', section, flags=re.M)
if not min_ollama:
    sys.exit("bundle.toml: the [codex] section has no min_ollama")

lines = [
    "[codex]",
    f'version = "{version}"',
    "# Codex's npm platform packages (npm view @openai/codex@<version>-<platform> dist),",
    "# each pinned by the registry's integrity (sha512); written by scripts/bump-codex.sh.",
    'base_url = "https://registry.npmjs.org/@openai/codex/-/"',
    f"# Codex {version} refuses an Ollama older than this (GET /api/version); build.rs",
    "# refuses to embed such an Ollama.",
    f'min_ollama = "{min_ollama.group(1)}"',
]
for pin in sorted(pins):
    target, suffix, integrity = pin.split("=", 2)
    package_version = f"{version}-{suffix}"
    lines += [
        "",
        f"[codex.targets.{target}]",
        f'package = "@openai/codex@{package_version}"',
        f'asset = "codex-{package_version}.tgz"',
        f'integrity = "{integrity}"',
    ]
section_text = "\n".join(lines) + "\n"
if after:
    section_text += "\n"
open(path, "w", encoding="utf-8").write(text[:start] + section_text + after)
