"""Reading a plugin's config, shared by the Python reference plugins.

The host hands a plugin its `config` table from gaffer.toml as JSON text ("{}" when absent).
"""

import json

from componentize_py_types import Err


def given_fields(text: str) -> dict:
    """The fields the config sets: {} for empty text or `null`; an error for anything but a
    JSON object, which the host reports as the plugin's fault."""
    text = text.strip()
    if text in ("", "null"):
        return {}
    try:
        given = json.loads(text)
    except ValueError as e:
        raise Err(f"invalid config: {e}")
    if not isinstance(given, dict):
        raise Err(f"invalid config: expected a JSON object, got `{text[:40]}`")
    return given
