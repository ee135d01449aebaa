import pytest

from harness.errors import PlanError
from harness.registry import Registry, compressors, evaluators, servers


def test_lazy_resolution_and_did_you_mean():
    r = Registry("widget")
    r.register("json_dumps", "json:dumps")
    import json

    assert r.get("json_dumps") is json.dumps
    with pytest.raises(PlanError) as e:
        r.get("json_dump")
    assert "unknown widget 'json_dump'" in str(e.value) and "did you mean 'json_dumps'" in str(e.value)


def test_conflicting_registration_rejected():
    r = Registry("widget")
    r.register("a", "json:dumps")
    r.register("a", "json:dumps")  # same target: fine
    with pytest.raises(ValueError):
        r.register("a", "json:loads")


def test_every_registered_plugin_resolves():
    for reg in (compressors, servers, evaluators):
        for name in reg.names():
            assert reg.get(name) is not None


def test_compressor_contract():
    for name in compressors.names():
        c = compressors.get(name)
        assert c.kind == name and c.precisions and isinstance(c.needs_gpu, bool) and c.engines


def test_overrides_from_environment_string():
    from harness.registry import load_overrides

    load_overrides("evaluator.my_eval=json:loads")
    try:
        import json

        assert evaluators.get("my_eval") is json.loads
    finally:
        evaluators._targets.pop("my_eval")
        evaluators._loaded.pop("my_eval", None)
    with pytest.raises(ValueError, match="FAMILY.NAME=module:attr"):
        load_overrides("nonsense")
    with pytest.raises(ValueError):
        load_overrides("planet.x=json:loads")
