"""Triton's CPU interpreter under NumPy >= 2.5, for Triton releases that convert without squeezing (3.6; 3.9 squeezes).

In the interpreter every scalar is a one-element NumPy array of shape (1,), and a loop bound or index that is
one (``range(n_chunks)`` with a run-time ``n_chunks``, or anything derived from ``tl.program_id``) goes
through ``tensor.__index__``. Triton 3.6 defines that as ``int(data)``, which NumPy 2.5 refuses for arrays with a
dimension ("only 0-dimensional arrays can be converted to Python scalars"); Triton 3.9 squeezes the array
first. :func:`patch_interpreter_index` installs the squeezing form in older releases too. It changes nothing in
compiled kernels (the interpreter is only used by the tests) and nothing where Triton already squeezes.
"""
from __future__ import annotations


def patch_interpreter_index() -> None:
    """Make the interpreter's ``tensor.__index__`` squeeze its one-element array before ``int()``."""
    try:
        from triton.runtime import interpreter
    except ImportError:  # no Triton (not Linux): the kernels are not tested
        return
    patch_tensor = getattr(interpreter, "_patch_lang_tensor", None)
    if patch_tensor is None or getattr(patch_tensor, "squeezes_index", False):
        return

    def patch_tensor_squeezing_index(tensor, scope) -> None:
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    patch_tensor_squeezing_index.squeezes_index = True
    interpreter._patch_lang_tensor = patch_tensor_squeezing_index
