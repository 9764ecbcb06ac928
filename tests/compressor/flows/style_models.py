"""Small models, one per module style int8 lowerings have to keep float on request:
plain Conv-BN-ReLU(6), timm's BatchNormAct2d (a BatchNorm with the activation and a
`drop` Identity inside), a residual add, a squeeze-excitation product, a BatchNorm on a
block's input (FastViT's identity branch: no convolution folds it), and a pre-norm
LayerNorm/attention block. Random weights, eval mode, 3x16x16 inputs."""

import torch
from torch import nn


class ConvBnRelu(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1, groups=c), nn.BatchNorm2d(c), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class TimmNormAct(nn.Module):
    def __init__(self, c: int = 8) -> None:
        from timm.layers import BatchNormAct2d

        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn1 = BatchNormAct2d(c, act_layer=nn.ReLU6)
        self.conv2 = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = BatchNormAct2d(c, act_layer=nn.SiLU)
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        return self.head(x.mean((2, 3)))


class Residual(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 1))
        self.identity = nn.BatchNorm2d(c)  # on the block's input, as in FastViT's MobileOne blocks
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.branch(x) + self.identity(x)
        return self.head(x.mean((2, 3)))


class SqueezeExcitation(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.act = nn.Hardswish()
        self.reduce = nn.Conv2d(c, c // 2, 1)
        self.expand = nn.Conv2d(c // 2, c, 1)
        self.gate = nn.Sigmoid()
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        x = self.act(self.stem(x))
        x = x * self.gate(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return self.head(x.mean((2, 3)))


class Attention(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        att = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, d))


class NormAttention(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return self.head(x.mean(1))


STYLES = {"conv_bn_relu": ConvBnRelu, "timm_bn_act": TimmNormAct, "residual": Residual,
          "squeeze_excitation": SqueezeExcitation, "layernorm_attention": NormAttention}


def style_model(name: str, outlier: float = 256.0) -> nn.Module:
    """The style's model; its first convolution's channel 0 runs `outlier` times larger,
    so that per-tensor int8 of what follows visibly loses accuracy (the float model
    does not care)."""
    torch.manual_seed(0)
    m = STYLES[name]()
    with torch.no_grad():
        for mod in m.modules():  # BatchNorm statistics that are not the identity
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
        first = next(mod for mod in m.modules() if isinstance(mod, nn.Conv2d))
        first.weight[0] *= outlier
        if first.bias is not None:
            first.bias[0] *= outlier
        if isinstance(m, NormAttention):  # an outlier channel into qkv, as trained transformers have
            m.norm1.weight[0] *= outlier
            m.norm1.bias[0] *= outlier
            m.attn.qkv.weight[:, 0] /= outlier
    return m.eval()


class AllStyles(nn.Module):
    """Every style above in one network, in the order a hybrid model has them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_bn_relu = ConvBnRelu().features
        self.timm = TimmNormAct()
        self.timm.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.residual = Residual()
        self.residual.stem = nn.Conv2d(8, 8, 3, padding=1)
        self.se = SqueezeExcitation()
        self.se.stem = nn.Conv2d(8, 8, 3, padding=1)
        self.tokens = NormAttention()
        self.tokens.patch = nn.Conv2d(8, 16, 4, stride=4)

    def forward(self, x):
        x = self.conv_bn_relu(x)
        t = self.timm
        x = t.bn2(t.conv2(t.bn1(t.conv1(x))))
        r = self.residual
        x = r.stem(x)
        x = x + r.branch(x) + r.identity(x)
        s = self.se
        x = s.act(s.stem(x))
        x = x * s.gate(s.expand(torch.relu(s.reduce(x.mean((2, 3), keepdim=True)))))
        a = self.tokens
        x = a.patch(x).flatten(2).transpose(1, 2)
        x = x + a.attn(a.norm1(x))
        x = x + a.mlp(a.norm2(x))
        return a.head(x.mean(1))


STYLES["all"] = AllStyles
