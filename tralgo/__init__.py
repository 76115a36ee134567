"""TRAlgo, the Trajectory Regularized Algorithm, as torch optimizers (importable with torch alone).

Paper: Yikai Zhang, Hui Qu, Chao Chen, Dimitris Metaxas, "Taming the Noisy Gradient: Train Deep Neural
Networks with Small Batch Sizes", IJCAI 2019, pp. 4348–4354, doi:10.24963/ijcai.2019/604 (Algorithm 1:
TRAlgo(T, λ, w0, S); Section 4: TRSGD and TRAdam). Official code (CIFAR only):
https://github.com/huiqu18/TRAlgorithm

Every ``S = inner_steps`` calls of ``step()`` the current weights become the anchor ``w_t``. The n-th
call (k = n mod S) then takes one step of a base optimizer on the regularized objective
``G_t(w) = f(w) + λ/2·‖w − w_t‖²``, i.e. on the direction

    d = grad + weight_decay·w + c·(w − w_t),   c = λ                 (prox_mode="paper")
                                               c = 2·λ·lr0/lr        (prox_mode="reference")

with step size ``lr/(k+1)`` (``inner_decay=True``) or ``lr``. λ is ``prox``, lr0 is the group's lr when
the optimizer was built, lr is its lr now. ``p.grad`` is never modified and the groups' ``lr``
keeps the value the user or a scheduler set. Beyond the base optimizer's state the only
parameter-sized buffer is the anchor. ``state_dict()`` carries the anchors, the step count and the
base optimizer's state, so a resume in the middle of an inner round continues the same trajectory;
``load_state_dict()`` refuses (ValueError naming the missing group key or state entry, before it
changes anything) a state dict of another optimizer, e.g. of ``torch.optim.Adam`` or of TRSGD for TRAdam.

- :class:`TRAdam` (``tralgo.tradam``): Adam exactly as ``torch.optim.Adam`` computes it (moments and
  bias correction never reset).
- :class:`TRSGD` (``tralgo.trsgd``): SGD exactly as ``torch.optim.SGD`` (momentum, dampening, nesterov).
- :class:`TrajectoryRegularizer` (``tralgo.regularizer``): wraps any other ``torch.optim.Optimizer``
  (AdamW, RMSprop, ...).

Complex parameters are handled as ``torch.optim`` handles them: TRAdam updates each as
``torch.view_as_real`` of it (parameter, gradient, anchor and moments), so its real and imaginary parts
move as two real entries; TRSGD's update is linear and the same on either view. The state keeps the
parameters' complex dtype, and ``distance_to_anchor()`` counts both parts.

Where this differs from the official code:

- ``prox_mode="paper"`` (default) uses the paper's λ·(w − w_t); the official code's coefficient is
  2·λ_w/lr with λ_w = λ·lr0, which grows as a schedule lowers lr: ``prox_mode="reference"``.
- Adam is the current ``torch.optim.Adam`` formula; the official code uses the pre-1.0 one (ε added
  before the bias-correction rescale).
- ``step()`` counts k itself (the official code's caller passes it), and d is formed in scratch
  memory instead of being added into ``p.grad`` in place.

As in ``torch.optim``, each module holds a thin class, the readable reference update and, behind one
dispatcher function, the faster paths, taken per (device, dtype) bucket of a group:

- ``foreach=True`` (the default on CUDA), the multi-tensor path: d is formed for a chunk of up to
  64 MB of tensors by one ``torch._foreach_*`` call and consumed by one call of torch's fused kernel
  (with ``fused=False``: by torch's multi-tensor formula), so a step issues a constant number of
  launches however many tensors there are;
- ``foreach=False, fused=True`` (the default elsewhere), per tensor: torch's fused kernel fed chunk
  by chunk of each tensor, d formed in a cache-sized piece right before the kernel reads it;
- ``foreach=False, fused=False``: the reference update (also taken, tensor by tensor, where a
  gradient's memory layout differs from its parameter's).

``fused=None`` takes torch's fused kernel wherever it exists for the bucket's device and dtype (never
for complex tensors, which torch's kernels do not take: they take the formulas); ``fused=True`` requires
it (so it refuses complex parameters, as torch does), and is refused together with ``foreach=True``
exactly as ``torch.optim.Adam`` and ``SGD`` refuse it (RuntimeError when the optimizer is built).

torch's private kernels are called only in ``tralgo._fused_kernels``, which states the torch versions
they rely on. Parameter groups may carry their own ``prox``, ``inner_steps``, ``inner_decay`` and
``prox_mode``.
"""
from tralgo.regularizer import TrajectoryRegularizer
from tralgo.tradam import TRAdam
from tralgo.trsgd import TRSGD

__all__ = ["TRAdam", "TRSGD", "TrajectoryRegularizer"]
