"""Words for reasoning text: the intensity legend and small phrase helpers.

The legend is the one the published MonetGPT was trained with (DESIGN.md): a value's
magnitude ``|v|`` in [-100, 100] maps to a word, so that a reasoning triplet and the value it
explains agree. Every planner (``auto``, the model backends, the puzzle writer) uses it.

===========  =====================
``|v|``      word
===========  =====================
0            none
1–12         very slight
13–24        slight
25–36        mild
37–48        moderate
49–60        noticeable
61–72        significant
73–84        very significant
85–100       extremely intense
===========  =====================
"""

from __future__ import annotations

import math

# (upper bound of |value|, word), in increasing order.
INTENSITY_LEGEND: tuple[tuple[int, str], ...] = (
    (12, "very slight"),
    (24, "slight"),
    (36, "mild"),
    (48, "moderate"),
    (60, "noticeable"),
    (72, "significant"),
    (84, "very significant"),
    (100, "extremely intense"),
)


def intensity_word(value: float) -> str:
    """The legend's word for an adjustment value (its magnitude, rounded half away from zero).

    >>> intensity_word(8), intensity_word(-30), intensity_word(61), intensity_word(100)
    ('very slight', 'mild', 'significant', 'extremely intense')
    >>> intensity_word(0)
    'none'
    """
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"not a finite value: {value!r}")
    mag = math.floor(abs(v) + 0.5)
    if mag == 0:
        return "none"
    for upper, word in INTENSITY_LEGEND:
        if mag <= upper:
            return word
    return INTENSITY_LEGEND[-1][1]


def intensity_range(word: str) -> tuple[int, int]:
    """The ``(low, high)`` magnitudes a legend word stands for (inverse of :func:`intensity_word`).

    >>> intensity_range("mild")
    (25, 36)
    """
    low = 1
    for upper, w in INTENSITY_LEGEND:
        if w == word:
            return (low, upper)
        low = upper + 1
    if word == "none":
        return (0, 0)
    raise ValueError(f"unknown intensity word {word!r}")


def signed(value: float) -> str:
    """``+20`` / ``-7`` / ``0``: a value as the plan shows it."""
    v = round(value)
    return f"{v:+d}" if v else "0"


def amount_phrase(value: float) -> str:
    """``"a slight amount"`` / ``"an extremely intense amount"``: the intensity word with its article."""
    word = intensity_word(value)
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word} amount"


def change_phrase(op: str, value: float, up: str = "Increase", down: str = "Decrease") -> str:
    """``"Increase Exposure by a slight amount (+20)"``: the verb follows the sign, the
    intensity word the magnitude."""
    verb = up if value > 0 else down
    return f"{verb} {op} by {amount_phrase(value)} ({signed(value)})"
