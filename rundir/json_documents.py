"""JSON documents that must hold a mapping: the one reading of them, each caller's own words.

A run's files, a configuration file and `TF_CONFIG` are read through here.
"""

import json

# `json_mapping`'s errors for a file this project wrote: a run's file that is not a JSON
# object was cut short or damaged.
NOT_JSON = "{source} is truncated or corrupt (not valid JSON: {error})."
NOT_MAPPING = "{source} is corrupt: it holds a {kind}, not a JSON object."


def json_mapping(text, *, source, not_json=NOT_JSON, not_mapping=NOT_MAPPING) -> dict:
    """The dict that the JSON document `text` holds: the one reading of JSON that must be a mapping.

    A run's files, a configuration file and `TF_CONFIG` are read through
    here; each caller words its own errors, naming the document and the fix.

    Args:
        text: str or bytes, the document.
        source: str, where it comes from (a path, `TF_CONFIG`), for the messages.
        not_json: str, the error when `text` is not JSON; `{source}` and
            `{error}` (the parser's words) are filled in.
        not_mapping: str, the error when it holds another value, as `require_mapping`'s.

    Raises:
        ValueError: `not_json` or `not_mapping`, filled in.
    """
    try:
        data = json.loads(text)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(not_json.format(source=source, error=e)) from None
    return require_mapping(data, source=source, not_mapping=not_mapping)


def require_mapping(data, *, source, not_mapping=NOT_MAPPING) -> dict:
    """`data` if it is a dict, as a parsed JSON or YAML document must be.

    Args:
        data: the parsed document.
        source: str, where it comes from, for the message.
        not_mapping: str, the error; `{source}`, `{kind}` (`list`, `str`, ...)
            and `{value}` (`data`; `{value!r:.80}` for its start) are filled in.

    Raises:
        ValueError: `not_mapping`, filled in.
    """
    if not isinstance(data, dict):
        raise ValueError(not_mapping.format(source=source, kind=type(data).__name__, value=data))
    return data
