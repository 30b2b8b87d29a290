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


def test_auto_defaults_to_the_finalists_module_rounds():
    """tuner auto spells the default out (importing finalists would pull numpy into
    every command's start); the two must agree."""
    from tuner.cli.main import build_parser
    from tuner.vocabulary import DEFAULT_FINALIST_ROUNDS as DEFAULT_ROUNDS
    from tuner.vocabulary import DEFAULT_FINALISTS

    args = build_parser().parse_args(["auto", "--model", "m"])
    assert (args.finalists, args.finalist_rounds) == (DEFAULT_FINALISTS, DEFAULT_ROUNDS)
