"""Method specs on the command line: ``name:key=value[:key=value]``, typed from the config."""

import pytest

from adatp.errors import ConfigError
from adatp.methods.base import build_method, parse_method_spec


def test_values_are_typed_from_the_method_config():
    assert parse_method_spec("adatp") == ("adatp", {})
    assert parse_method_spec("adatp:alpha=0:dedup_threshold=2:segmentation=false") == (
        "adatp", {"alpha": 0.0, "dedup_threshold": 2.0, "segmentation": False})
    name, opts = parse_method_spec("adatp:segment_threshold=none:min_segments=3:scoring=random")
    assert opts == {"segment_threshold": None, "min_segments": 3, "scoring": "random"}
    assert type(opts["min_segments"]) is int
    assert parse_method_spec("fastv:k=3:score_layer=self") == ("fastv", {"k": 3, "score_layer": "self"})
    name, opts = parse_method_spec("adatp:segmentation=off")
    method = build_method(name, **opts)
    assert method.config.segmentation is False


@pytest.mark.parametrize(
    "spec, message",
    [
        ("adatp:alhpa=0", "unknown option 'alhpa' in method spec 'adatp:alhpa=0'; adatp's options: alpha,"),
        ("adatp:alpha=x", "option alpha='x' in method spec 'adatp:alpha=x' is not a valid float"),
        ("adatp:segmentation=maybe", "not a valid bool (use true or false)"),
        ("adatp:min_segments=2.5", "not a valid int"),
        ("adatp:alpha", "expected key=value"),
        ("adatp:alpha=-1", "alpha must be >= 0"),
        ("adatp:alpha=1:alpha=0", "sets 'alpha' twice"),
        ("adatp:flops_ratio=.3", "give it with --flops-ratio"),
        ("magic:x=1", "unknown method 'magic'"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(ConfigError) as exc:
        parse_method_spec(spec)
    assert message in str(exc.value) and "\n" not in str(exc.value)
