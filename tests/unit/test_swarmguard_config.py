"""The shared configuration loader (swarmguard_config), as the three components use it."""
from dataclasses import dataclass, field, fields

import pytest

from swarmguard_config import (
    NOT_FROM_ENV, NOT_NEGATIVE, POSITIVE, ConfigError, Layer, env_name, load,
)


@dataclass(frozen=True)
class Example:
    dry_run: bool = False
    workers: int = field(default=4, metadata=POSITIVE)
    cooldown: float = field(default=60.0, metadata=NOT_NEGATIVE)
    port: int = field(default=80, metadata={"min": 0, "max": 65535})
    name: str = "demo"
    capacity: float | None = field(default=None, metadata=POSITIVE)
    start_method: str = field(default="forkserver", metadata={"env": "EX_MP_START_METHOD"})
    level: str = field(default="INFO", metadata={"one_of": ("DEBUG", "INFO")})
    route_path: str = field(default="/proc/net/route", metadata=NOT_FROM_ENV)


def test_without_variables_every_field_keeps_its_default():
    assert load(Example, "EX_", {}) == Example()


def test_a_variable_is_named_after_its_field_with_the_prefix():
    assert load(Example, "EX_", {"EX_WORKERS": "8", "EX_NAME": "x"}) == Example(workers=8,
                                                                                name="x")


def test_a_field_s_metadata_can_keep_a_public_name_that_differs_from_it():
    assert load(Example, "EX_", {"EX_MP_START_METHOD": "spawn"}).start_method == "spawn"
    assert load(Example, "EX_", {"EX_START_METHOD": "spawn"}).start_method == "forkserver"


def test_a_field_marked_not_from_env_is_never_read():
    assert load(Example, "EX_", {"EX_ROUTE_PATH": "/x"}).route_path == "/proc/net/route"
    assert env_name(_field("route_path"), "EX_") is None


def test_a_fixed_value_is_passed_as_it_is():
    assert load(Example, "EX_", {}, fixed={"route_path": "/x"}).route_path == "/x"


def test_an_empty_variable_means_the_default():
    assert load(Example, "EX_", {"EX_WORKERS": "", "EX_NAME": "  "}) == Example()


def test_an_empty_optional_number_means_none():
    assert load(Example, "EX_", {"EX_CAPACITY": ""}).capacity is None
    assert load(Example, "EX_", {"EX_CAPACITY": "100"}).capacity == 100.0


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("Yes", True),
                                         ("on", True), ("0", False), ("false", False),
                                         ("no", False), ("OFF", False)])
def test_a_boolean_is_one_of_the_usual_words(text, value):
    assert load(Example, "EX_", {"EX_DRY_RUN": text}).dry_run is value


def test_values_are_coerced_by_the_field_s_type():
    loaded = load(Example, "EX_", {"EX_WORKERS": " 8 ", "EX_COOLDOWN": "1.5"})
    assert (loaded.workers, loaded.cooldown) == (8, 1.5)
    assert isinstance(loaded.workers, int)


@pytest.mark.parametrize("variable, value", [
    ("EX_WORKERS", "many"), ("EX_WORKERS", "2.5"), ("EX_COOLDOWN", "soon"),
    ("EX_COOLDOWN", "nan"), ("EX_CAPACITY", "inf"), ("EX_DRY_RUN", "maybe"),
])
def test_a_bad_number_names_the_variable_and_the_value(variable, value):
    with pytest.raises(ConfigError, match=f"{variable}='{value}'"):
        load(Example, "EX_", {variable: value})


@pytest.mark.parametrize("variable, value", [
    ("EX_WORKERS", "0"), ("EX_COOLDOWN", "-1"), ("EX_PORT", "-1"), ("EX_PORT", "65536"),
    ("EX_CAPACITY", "-5"),
])
def test_a_value_out_of_its_declared_bounds_names_the_variable(variable, value):
    with pytest.raises(ConfigError, match=f"{variable}='{value}' must be"):
        load(Example, "EX_", {variable: value})


def test_the_bounds_are_inclusive_where_declared_as_min_and_max():
    assert load(Example, "EX_", {"EX_COOLDOWN": "0", "EX_PORT": "65535"}).port == 65535


def test_a_word_from_a_list_is_matched_regardless_of_case_and_stored_as_listed():
    assert load(Example, "EX_", {"EX_LEVEL": "debug"}).level == "DEBUG"
    with pytest.raises(ConfigError, match="EX_LEVEL='LOUD' is not one of DEBUG, INFO"):
        load(Example, "EX_", {"EX_LEVEL": "LOUD"})


def test_a_field_s_own_check_sees_the_coerced_value_and_its_complaint_names_the_variable():
    def even(value):
        if value % 2:
            raise ValueError("must be even")

    @dataclass(frozen=True)
    class Checked:
        pairs: int = field(default=2, metadata={"check": even})

    assert load(Checked, "EX_", {"EX_PAIRS": " 4 "}).pairs == 4
    with pytest.raises(ConfigError, match="^EX_PAIRS='3': must be even$"):
        load(Checked, "EX_", {"EX_PAIRS": "3"})
    with pytest.raises(ConfigError, match="^file: pairs=5: must be even$"):
        load(Checked, "EX_", {}, beneath_env=Layer({"pairs": 5}, lambda name: f"file: {name}"))


def test_a_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_the_environment_wins_over_the_layer_beneath_it():
    file = Layer({"workers": 2, "name": "from-file"}, lambda name: f"file: {name}")
    loaded = load(Example, "EX_", {"EX_WORKERS": "8"}, beneath_env=file)
    assert (loaded.workers, loaded.name) == (8, "from-file")


def test_the_layer_above_wins_over_the_environment():
    flags = Layer({"workers": "16"}, lambda name: "--" + name)
    assert load(Example, "EX_", {"EX_WORKERS": "8"}, above_env=flags).workers == 16


def test_an_empty_value_in_a_layer_lets_the_one_below_through():
    flags = Layer({"workers": ""}, lambda name: "--" + name)
    assert load(Example, "EX_", {"EX_WORKERS": "8"}, above_env=flags).workers == 8


def test_a_bad_value_from_a_layer_is_named_as_that_layer_names_it():
    flags = Layer({"workers": "0"}, lambda name: "--" + name)
    with pytest.raises(ConfigError, match="--workers='0'"):
        load(Example, "EX_", {}, above_env=flags)


def test_typed_values_from_a_file_are_taken_but_a_boolean_is_not_a_number():
    file = Layer({"dry_run": True, "workers": 3}, lambda name: name)
    assert load(Example, "EX_", {}, beneath_env=file) == Example(dry_run=True, workers=3)
    with pytest.raises(ConfigError, match="workers=True"):
        load(Example, "EX_", {}, beneath_env=Layer({"workers": True}, lambda name: name))


def test_a_misspelt_bound_is_a_programming_error_not_a_silent_no_op():
    @dataclass(frozen=True)
    class Misspelt:
        workers: int = field(default=1, metadata={"mni": 1})

    with pytest.raises(TypeError, match="mni"):
        load(Misspelt, "EX_", {})


def test_a_field_of_a_type_it_cannot_read_must_be_marked_not_from_env():
    @dataclass(frozen=True)
    class Nested:
        inner: Example = field(default_factory=Example)

    with pytest.raises(TypeError, match="inner"):
        load(Nested, "EX_", {})


def _field(name):
    return next(f for f in fields(Example) if f.name == name)
