"""The model of examples/imdb_conv1d.rs (Keras 2's imdb_cnn.py) in PyTorch, timed per epoch on this machine.

The same layers and 350,751 parameters as imdb_conv1d_keras.py (PyTorch's Conv1d is channels-first, so the
embedding is transposed); the sigmoid is folded into BCEWithLogitsLoss; Adam with Keras' defaults, batch 32,
shuffled. On random data of IMDB's shapes (imdb_shapes.py); prints seconds per epoch (training only).

    python benches/peers/imdb_conv1d_torch.py [--samples 25000] [--epochs 1] [--threads 2]
"""
from imdb_shapes import parse_args, random_imdb, train_torch


def main():
    a = parse_args(__doc__.splitlines()[0])
    import torch
    from torch import nn
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    max_features, maxlen = 5000, 400
    x, y = random_imdb(a.samples, maxlen, max_features)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(max_features, 50)
            self.dropout = nn.Dropout(0.2)
            self.conv = nn.Conv1d(50, 250, 3)
            self.hidden = nn.Linear(250, 250)
            self.out = nn.Linear(250, 1)

        def forward(self, ids):
            h = self.dropout(self.embedding(ids)).transpose(1, 2)
            h = torch.relu(self.conv(h)).amax(2)
            h = torch.relu(self.dropout(self.hidden(h)))
            return self.out(h)

    train_torch(Net(), x, y, a.epochs)


if __name__ == "__main__":
    main()
