"""Turn cached uint8 images into model input, the same way in training, export and predict."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainers.data import resize_uint8


@dataclass(frozen=True)
class Preprocess:
    """Resize (once, on the uint8 cache), scale to [0, 1], match channels, normalise."""

    image_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` at any size -> uint8 at ``image_size`` (done once per split)."""
        return resize_uint8(images, (self.image_size, self.image_size))

    def to_unit(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return images.to(dtype).div_(255.0)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Float ``[0, 1]`` batch -> normalised model input with ``in_chans`` channels."""
        if x.shape[1] != self.in_chans:
            if x.shape[1] == 1:  # grayscale into an RGB model: repeat the channel
                x = x.expand(-1, self.in_chans, -1, -1)
            elif self.in_chans == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"cannot feed {x.shape[1]}-channel images to a "
                                 f"{self.in_chans}-channel model")
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 batch at ``image_size`` -> model input (no augmentation)."""
        return self.normalize(self.to_unit(images))
