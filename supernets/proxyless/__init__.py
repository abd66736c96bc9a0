"""The ProxylessNAS macro space: a MobileNetV2-style chain of inverted-residual blocks."""
