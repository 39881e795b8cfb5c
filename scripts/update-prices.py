#!/usr/bin/env python3
"""Extract gaffer's built-in price catalog from the price file that ships inside a pinned
release of the `litellm` package on PyPI (never typed from memory).

    python3 scripts/update-prices.py 1.110.2 2026-11-20

downloads that wheel with pip (no dependencies), reads
litellm/model_prices_and_context_window_backup.json, keeps the chat models and the fields gaffer
uses, and writes host/data/prices/litellm.json with the version and release date beside the data.
Prices stay decimal text exactly as published: they are parsed without floats. Avoid litellm
1.107.0, which was compromised.
"""
import decimal
import glob
import json
import subprocess
import sys
import tempfile
import zipfile

FIELDS = [
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "max_input_tokens",
    "max_output_tokens",
    "litellm_provider",
]
PRICE_FIELDS = FIELDS[:4]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: update-prices.py VERSION RELEASE-DATE")
    version, released = sys.argv[1], sys.argv[2]
    if version == "1.107.0":
        sys.exit("litellm 1.107.0 was compromised; pick another release")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             f"litellm=={version}", "-d", tmp],
            check=True,
        )
        wheel = glob.glob(f"{tmp}/litellm-{version}-*.whl")[0]
        raw = zipfile.ZipFile(wheel).read("litellm/model_prices_and_context_window_backup.json")
    data = json.loads(raw, parse_float=decimal.Decimal)
    models = {}
    for name, entry in sorted(data.items()):
        if not isinstance(entry, dict) or entry.get("mode") != "chat":
            continue
        if "input_cost_per_token" not in entry or "output_cost_per_token" not in entry:
            continue
        kept = {}
        for field in FIELDS:
            value = entry.get(field)
            if value is None:
                continue
            if field in PRICE_FIELDS:
                # Exact decimal text, e.g. "0.000003" for 3e-06.
                kept[field] = format(decimal.Decimal(value), "f")
            else:
                kept[field] = value
        models[name] = kept
    out = {
        "source": f"litellm {version} (PyPI), litellm/model_prices_and_context_window_backup.json",
        "litellm_version": version,
        "released": released,
        "models": models,
    }
    path = "host/data/prices/litellm.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)
        f.write("\n")
    print(f"{path}: {len(models)} chat models from litellm {version} ({released})")


main()
