"""mask_number: what INFO log lines show of a phone number."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from muxd.log import MASK, MASK_HIDDEN, mask_number


def test_examples() -> None:
    assert mask_number("+79001234567") == "+7900***4567"
    assert mask_number("+491701234567") == "+4917***4567"
    assert mask_number("79001234567") == "7900***4567"
    assert mask_number("+1234567") == "+12***67"
    assert mask_number("+123") == "+***"
    assert mask_number("") == "-"
    assert mask_number(None) == "-"


@given(st.booleans(), st.text("0123456789", min_size=1, max_size=20))
def test_hides_at_least_three_digits_and_keeps_the_ends(plus: bool, digits: str) -> None:
    number = ("+" if plus else "") + digits
    masked = mask_number(number)
    head, sep, tail = masked.partition(MASK)
    assert sep == MASK
    assert head.startswith("+") == plus
    shown = head.lstrip("+") + tail
    assert len(digits) - len(shown) >= min(MASK_HIDDEN, len(digits))
    assert digits.startswith(head.lstrip("+"))
    assert digits.endswith(tail)
    assert digits not in masked
    if len(digits) >= 11:  # a whole international number: prefix and last four
        assert (len(head.lstrip("+")), len(tail)) == (4, 4)
