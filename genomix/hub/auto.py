"""Register every genomix family with transformers' ``Auto*`` classes (no ``trust_remote_code``).

After :func:`register_auto_classes`, ``AutoConfig``/``AutoModel``/``AutoModelForCausalLM``/
``AutoModelForMaskedLM``/``AutoModelForSequenceClassification``/``AutoTokenizer`` resolve a
directory whose ``config.json`` says ``"model_type": "genomix-<family>"`` to genomix classes.
:func:`register_auto_classes` (all families) runs when ``genomix.hub`` is imported, and
:func:`genomix.models.registry.register_family` registers each family as its module loads. Both are idempotent.
A bare ``import genomix`` needs neither: :mod:`genomix.model_types` imports a family (and so registers it)
the first time transformers looks its ``model_type`` up.
"""
from __future__ import annotations

from ..models.registry import FAMILY_MODULES, Family, get_family

_AUTO_BY_TASK = {
    "base": "AutoModel",
    "causal-lm": "AutoModelForCausalLM",
    "masked-lm": "AutoModelForMaskedLM",
    "classification": "AutoModelForSequenceClassification",
}
_registered: set[str] = set()


def _importable_families() -> list:
    families = []
    for model_type, module in FAMILY_MODULES.items():
        try:
            families.append(get_family(model_type))
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the family module exists but is broken: surface that
                raise
        except KeyError:
            # The family module is being imported right now (it registers before calling us,
            # so this only happens for a module that imports genomix.hub before registering).
            continue
    return families


def register_with_auto(family: Family) -> None:
    """Register one family's config, models and tokenizer with the Auto* classes (idempotent)."""
    import transformers

    from ..tokenizer import Tokenizer

    if family.model_type in _registered:
        return
    transformers.AutoConfig.register(family.model_type, family.config_class, exist_ok=True)
    for task, model_class in family.models.items():
        getattr(transformers, _AUTO_BY_TASK[task]).register(family.config_class, model_class, exist_ok=True)
    transformers.AutoTokenizer.register(family.config_class, slow_tokenizer_class=Tokenizer, exist_ok=True)
    _registered.add(family.model_type)


def register_auto_classes() -> list[str]:
    """Register all importable families; returns the model types registered so far."""
    for family in _importable_families():
        register_with_auto(family)
    return sorted(_registered)
