import pytest

from tuner.cli.common import parse_duration, parse_seq_lens
from tuner.errors import UserError


def test_parse_seq_lens():
    assert parse_seq_lens("16,128") == [16, 128]
    assert parse_seq_lens("64") == [64]
    for bad in ("", "a,b", "0", "16,-1"):
        with pytest.raises(UserError):
            parse_seq_lens(bad)


def test_parse_duration():
    assert parse_duration("90") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400
    with pytest.raises(UserError, match="10m"):
        parse_duration("ten minutes")
