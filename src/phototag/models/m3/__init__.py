"""M3: multi-modal multi-scale deep learning with label-quantity prediction (Niu et al.,
2017; docs/models/m3.md). The network, its losses and its staged training are in
`phototag.models.m3.network`."""
