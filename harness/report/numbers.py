"""Numbers as researchers write them: 32.29 M parameters, 85.49 G MACs, 31.73 dB; never ``3.22887e+07``."""

from __future__ import annotations

import math


def absent(value) -> bool:
    """None or NaN: a value the store or the tables do not hold."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def fixed(value, digits: int, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals ("" when absent, "∞"/"−∞" when infinite: identical images)."""
    if absent(value):
        return ""
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    text = f"{value:{'+' if sign else ''}.{digits}f}"
    return text.replace("-", "−")


def scaled(value, unit: str, digits: int = 2) -> str:
    """A count in ``unit`` (value already in that unit): ``32.29 M``; small values keep three significant
    digits (``0.151 M``) so that a published ``0.151`` is not shown as ``0.15``."""
    if absent(value) or math.isinf(value):
        return fixed(value, digits)
    if value != 0 and abs(value) < 1:
        return f"{value:.3g} {unit}"
    return f"{value:.{digits}f} {unit}"


def significant(value, sign: bool = False) -> str:
    """A difference of any size: 3 significant digits, plain decimals when readable (``+0.0012``), else
    scientific as researchers write it (``3.33×10⁻⁶``)."""
    if absent(value):
        return ""
    if math.isinf(value):
        return fixed(value, 0)
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        text = f"{value:{'+' if sign else ''}.3g}"
        if "e" not in text:
            return text.replace("-", "−")
    mantissa, exponent = f"{value:{'+' if sign else ''}.2e}".split("e")
    superscript = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa}×10{superscript}".replace("-", "−")


def sort_key(value) -> str:
    """The ``data-sort`` attribute of a numeric cell: the raw value ("" when absent)."""
    if absent(value):
        return ""
    if math.isinf(value):
        return "1e308" if value > 0 else "-1e308"
    return repr(float(value))


def measured(value) -> str:
    """A measured or reference value of any kind: counts with thousands separators (``32,288,698``),
    decimals to 6 significant digits (``31.7316``), tiny values in scientific notation."""
    if absent(value) or math.isinf(value):
        return fixed(value, 0)
    if abs(value) >= 1e6 or (float(value).is_integer() and abs(value) >= 1000):
        return f"{value:,.0f}".replace("-", "−")
    if value == 0 or abs(value) >= 1e-3:
        return f"{value:.6g}".replace("-", "−")
    return significant(value)
