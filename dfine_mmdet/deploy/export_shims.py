"""Export shim of dfine_mmdet for MMDeploy (was in ``dfine_mmdet/compat.py``).

It names the third-party version it fixes and why, and only acts when that
version is present.

:func:`onnx_export__torchscript` (torch >= 2.9 with MMDeploy 1.3.1).
torch 2.9 made ``torch.onnx.export(..., dynamo=True)`` the default.
MMDeploy 1.3.1 (the last PyPI release, 2023-12) calls ``torch.onnx.export``
without ``dynamo=``, and its function/symbolic rewriters only act on the
TorchScript exporter. With the dynamo exporter the export fails inside
MMDeploy's rewritten forward, and a ``KeyError: -1`` from
``RewriterContext.__exit__`` then hides the real error. The shim is an
MMDeploy function rewriter of ``torch.onnx.export``. It passes
``dynamo=False`` when the installed torch takes that argument, and only
inside MMDeploy's ``RewriterContext``, so the global default is left alone.
"""
import inspect


def onnx_export__torchscript(*args, **kwargs):
    """MMDeploy function rewriter body for ``torch.onnx.export``.

    It forces the TorchScript exporter (``dynamo=False``) on torch versions
    whose ``torch.onnx.export`` takes a ``dynamo`` argument (torch >= 2.5;
    dynamo is the default from torch 2.9). On older torch the call is passed
    through unchanged. An explicit ``dynamo=`` from the caller is kept.
    """
    from mmdeploy.core import FUNCTION_REWRITER
    ctx = FUNCTION_REWRITER.get_context('torch.onnx.export')
    origin = ctx.origin_func
    if _accepts_kwarg(origin, 'dynamo'):
        kwargs.setdefault('dynamo', False)
    return origin(*args, **kwargs)


def _accepts_kwarg(func, name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


_ONNX_EXPORT_SHIM_REGISTERED = False


def register_onnx_export_shim() -> None:
    """Register :func:`onnx_export__torchscript` with MMDeploy (once)."""
    global _ONNX_EXPORT_SHIM_REGISTERED
    if _ONNX_EXPORT_SHIM_REGISTERED:
        return
    from mmdeploy.core import FUNCTION_REWRITER
    FUNCTION_REWRITER.register_rewriter('torch.onnx.export')(
        onnx_export__torchscript)
    _ONNX_EXPORT_SHIM_REGISTERED = True
