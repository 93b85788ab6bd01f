"""The CUDA paths, on a machine with a GPU (``benchmarks/gpu_check.py`` runs this file there); skipped elsewhere.

A GPU segments what the CPU segments (AMP changes probabilities slightly, so label maps are compared by Dice),
the precisions say what ran, and one training step under AMP lowers the loss.
"""

import pytest
import torch
from monai.networks.nets import DynUNet

from BratsUNetLib.errors import BratsUNetError
from BratsUNetLib.inference import backends

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return DynUNet(3, 4, 3, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                   filters=[8, 16, 32]).eval()


def brain_batch() -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 64)] * 3, indexing="ij"))
    image = ((grid**2).sum(0) < 0.6).float().expand(4, -1, -1, -1).clone()
    image += 0.3 * torch.rand(image.shape, generator=torch.Generator().manual_seed(1))
    return ((image - image.mean()) / image.std())[None]


def test_each_cuda_precision_runs_as_it_says_and_agrees_with_the_cpu():
    batch = brain_batch()
    reference = backends.prepare(network(), backend="eager")(batch)
    gpu_network = network().cuda()
    for precision, runs_as, tolerance in ((None, "amp", 0.05), ("fp32", "eager, fp32", 1e-3), ("bf16", "amp", 0.05)):
        runner = backends.prepare(gpu_network, device="cuda", precision=precision)
        logits = runner(batch.cuda()).float().cpu()
        assert runner.description.startswith(runs_as)
        assert (logits.sigmoid() - reference.sigmoid()).abs().max() <= tolerance, precision


def test_int8_is_refused_on_a_gpu():
    with pytest.raises(BratsUNetError, match="int8 runs on the CPU"):
        backends.prepare(network().cuda(), device="cuda", precision="int8")


def test_a_training_step_under_amp_lowers_the_loss():
    from monai.losses import DiceCELoss

    model = network().cuda().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cuda")
    images = brain_batch().cuda()
    labels = (images[:, :3] > 0).float()
    loss_function = DiceCELoss(sigmoid=True)
    losses = []
    for _ in range(5):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_function(model(images), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
