"""The one exception type raised for bad data anywhere in `maskvl_processing`.

Self-contained (no imports) so that it can be copied to the Hub as remote code next to the
image processor.
"""


class MaskVLDataError(ValueError):
    """A data item cannot be used: unreadable or empty image, empty caption, missing column...

    The message always names the item (batch index and, where known, the file or field), e.g.
    ``"item 3 (file 'img/0003.jpg'): cannot read image: ..."``.
    """


def describe_item(index=None, source=None, field=None) -> str:
    """Human-readable name of a data item for error messages: ``"item 3 (file 'a.jpg')"``."""
    parts = []
    if field is not None:
        parts.append(f"field {field!r}")
    if source is not None:
        parts.append(f"file {str(source)!r}")
    name = "item" if index is None else f"item {index}"
    return f"{name} ({', '.join(parts)})" if parts else name
