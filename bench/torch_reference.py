"""The simpsons DCGAN's training step in PyTorch on the CPU: the optional PyTorch row of
bench/throughput.py (`--torch`), the same arithmetic as its plain TensorFlow loop.

The same networks as dcgan_tf/model/nets/simpsons.py (5 stride-2 layers of 5x5 kernels each side,
batch norm with momentum 0.9 and epsilon 1e-5, ReLU in G, leaky ReLU 0.2 in D, tanh output), the same
step (one D update on real and generated images, then `g_steps` G updates with the same z, sigmoid
cross-entropy, Adam with beta1 0.5), channels-last tensors (PyTorch's faster layout for CPU
convolutions), bfloat16 through torch.autocast. Not the original's initialisers: speed only.
Importing this module does not import torch; `available()` says whether it is installed.
"""

from __future__ import annotations

import importlib.util
import time


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


def simpsons_networks(size: int, width: int, z_dim: int = 100, c_dim: int = 3):
    """(generator, discriminator) as torch.nn.Modules, for size x size images."""
    import torch
    from torch import nn

    from dcgan_tf.model.nets.simpsons import BN_EPSILON, BN_MOMENTUM, KERNEL, NUM_LAYERS, layer_sizes

    smallest = layer_sizes(size)[-1]
    top = width * 2 ** (NUM_LAYERS - 1)

    def bn(channels):
        # torch's momentum weighs the new batch, Keras's the running value.
        return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=1 - BN_MOMENTUM)

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(z_dim, smallest * smallest * top)
            self.bn0 = bn(top)
            layers = []
            for i in range(1, NUM_LAYERS + 1):
                last = i == NUM_LAYERS
                out = c_dim if last else width * 2 ** (NUM_LAYERS - 1 - i)
                layers.append(nn.ConvTranspose2d(width * 2 ** (NUM_LAYERS - i), out, KERNEL, stride=2, padding=2,
                                                 output_padding=1))
                layers.append(nn.Tanh() if last else nn.Sequential(bn(out), nn.ReLU()))
            self.body = nn.Sequential(*layers)

        def forward(self, z):
            x = self.lin(z).view(-1, top, smallest, smallest).contiguous(memory_format=torch.channels_last)
            return self.body(torch.relu(self.bn0(x)))

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            layers = []
            for i in range(NUM_LAYERS):
                layers.append(nn.Conv2d(c_dim if i == 0 else width * 2 ** (i - 1), width * 2 ** i, KERNEL, stride=2,
                                        padding=2))
                if i:
                    layers.append(bn(width * 2 ** i))
                layers.append(nn.LeakyReLU(0.2))
            self.body = nn.Sequential(*layers)
            self.lin = nn.Linear(smallest * smallest * top, 1)

        def forward(self, images):
            return self.lin(torch.flatten(self.body(images), 1))

    to_cpu = dict(memory_format=torch.channels_last)
    return Generator().to(**to_cpu), Discriminator().to(**to_cpu)


class TorchLoop:
    """The training step in PyTorch, on one fixed batch of random "real" images; run(steps) times it."""

    def __init__(self, size: int, width: int, batch: int, bfloat16: bool, g_steps: int = 2, threads: int = 0,
                 learning_rate: float = 2e-4, seed: int = 0):
        import torch

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.torch, self.batch, self.g_steps, self.bfloat16 = torch, batch, g_steps, bfloat16
        self.generator, self.discriminator = simpsons_networks(size, width)
        adam = lambda params: torch.optim.Adam(params, lr=learning_rate, betas=(0.5, 0.999))  # noqa: E731
        self.d_optimizer, self.g_optimizer = adam(self.discriminator.parameters()), adam(self.generator.parameters())
        self.real = (torch.rand(batch, 3, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
        self.loss = torch.nn.BCEWithLogitsLoss()

    def step(self) -> float:
        torch = self.torch
        ones, zeros = torch.ones(self.batch, 1), torch.zeros(self.batch, 1)
        z = torch.rand(self.batch, 100) * 2 - 1
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            fake = self.generator(z).detach()
            d_loss = (self.loss(self.discriminator(self.real).float(), ones)
                      + self.loss(self.discriminator(fake).float(), zeros))
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optimizer.step()
        for _ in range(self.g_steps):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
                g_loss = self.loss(self.discriminator(self.generator(z)).float(), ones)
            self.g_optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
            self.g_optimizer.step()
        return float(g_loss.detach())

    def run(self, steps: int):
        """(wall s, CPU s) of `steps` steps, finished."""
        started, started_cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        return time.perf_counter() - started, time.process_time() - started_cpu
