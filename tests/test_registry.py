import pytest

from slimkit.errors import SlimkitError
from slimkit.registry import Registry


def test_register_get_and_list():
    reg = Registry[int]("number")

    @reg.register("one")
    def one() -> int:
        """The first number."""
        return 1

    reg.add("two", 2, help="second")
    assert reg.get("one") is one
    assert reg.get("two") == 2
    assert reg.list() == ["one", "two"]
    assert reg.list("t*") == ["two"]
    assert reg.help("one") == "The first number."
    assert "one" in reg and "three" not in reg
    assert len(reg) == 2


def test_unknown_name_suggests_close_matches():
    reg = Registry[int]("model")
    reg.add("resnet-mini", 1)
    with pytest.raises(
        SlimkitError, match=r"Unknown model 'resnet-mnii'\. Did you mean 'resnet-mini'\?"
    ):
        reg.get("resnet-mnii")


def test_duplicate_registration_is_refused():
    reg = Registry[int]("x")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)
