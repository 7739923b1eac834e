"""The scripts and symbol blocks the glyph set draws its classes from: one alphabet each.

Order matters: when two characters look the same, the one met first is kept, so familiar scripts
come first and symbol blocks last. Block elements (U+2580-259F) are left out on purpose: once a
glyph is scaled to fit its box, a half block and a five-eighths block are the same filled square.
"""

from __future__ import annotations

from dataclasses import dataclass

_LETTERS = frozenset({"Lu", "Ll", "Lt", "Lo"})
_SYMBOLS = frozenset({"Sm", "So"})


@dataclass(frozen=True)
class Alphabet:
    """A named set of code point ranges (inclusive) and the Unicode categories taken from them."""

    name: str
    ranges: tuple[tuple[int, int], ...]
    categories: frozenset[str] = _LETTERS
    name_prefix: str = ""

    def contains(self, *, codepoint: int, category: str, char_name: str) -> bool:
        """Whether this alphabet takes the character (range, category and name prefix all match)."""
        return (
            category in self.categories
            and any(low <= codepoint <= high for low, high in self.ranges)
            and char_name.startswith(self.name_prefix)
        )


ALPHABETS: tuple[Alphabet, ...] = (
    Alphabet("Latin", ((0x0041, 0x024F), (0x2C60, 0x2C7F), (0xA720, 0xA7FF)), name_prefix="LATIN"),
    Alphabet("Greek", ((0x0370, 0x03FF),), name_prefix="GREEK"),
    Alphabet("Coptic", ((0x03E2, 0x03EF), (0x2C80, 0x2CFF)), name_prefix="COPTIC"),
    Alphabet("Cyrillic", ((0x0400, 0x052F), (0xA640, 0xA69F)), name_prefix="CYRILLIC"),
    Alphabet("IPA", ((0x0250, 0x02AF),)),
    Alphabet("Armenian", ((0x0531, 0x0587),)),
    Alphabet("Hebrew", ((0x05D0, 0x05F2),)),
    Alphabet("Arabic", ((0x0620, 0x06FF),), name_prefix="ARABIC LETTER"),
    Alphabet("N'Ko", ((0x07CA, 0x07EA),)),
    Alphabet("Lao", ((0x0E81, 0x0EAE), (0x0EDC, 0x0EDF))),
    Alphabet("Georgian", ((0x10A0, 0x10FF), (0x2D00, 0x2D2F))),
    Alphabet("Canadian syllabics", ((0x1400, 0x167F),)),
    Alphabet("Ogham", ((0x1681, 0x169A),)),
    Alphabet("Tifinagh", ((0x2D30, 0x2D7F),)),
    Alphabet("Lisu", ((0xA4D0, 0xA4F7),)),
    Alphabet("Old Italic", ((0x10300, 0x1031F),)),
    Alphabet("Braille", ((0x2800, 0x28FF),), _SYMBOLS),
    Alphabet("Arrows", ((0x2190, 0x21FF), (0x27F0, 0x27FF), (0x2900, 0x297F)), _SYMBOLS),
    Alphabet("Mathematical operators", ((0x2200, 0x22FF), (0x2A00, 0x2AFF)), _SYMBOLS),
    Alphabet("Technical symbols", ((0x2300, 0x23FF),), _SYMBOLS),
    Alphabet("Box drawing", ((0x2500, 0x257F),), _SYMBOLS),
    Alphabet("Geometric shapes", ((0x25A0, 0x25FF),), _SYMBOLS),
    Alphabet("Miscellaneous symbols", ((0x2600, 0x26FF),), _SYMBOLS),
    Alphabet("Dingbats", ((0x2700, 0x27BF),), _SYMBOLS),
    Alphabet("Yijing hexagrams", ((0x4DC0, 0x4DFF),), _SYMBOLS),
    Alphabet("Tai Xuan Jing", ((0x1D300, 0x1D35F),), _SYMBOLS),
    Alphabet("Domino tiles", ((0x1F030, 0x1F09F),), _SYMBOLS),
)
