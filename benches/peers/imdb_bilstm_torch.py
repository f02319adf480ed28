"""keras-io's "Bidirectional LSTM on IMDB" in PyTorch, timed per epoch on this machine.

Embedding(20000, 128) on sequences of 200, a bidirectional nn.LSTM(128, 64) returning every step, a second
one whose last states (forward: the last step, backward: the first) are concatenated, Linear(128, 1); the
sigmoid is folded into BCEWithLogitsLoss; Adam with Keras' defaults, batch 32, shuffled. 2,758,785
parameters: Keras' 2,757,761 plus the second bias PyTorch's LSTM keeps per gate (4 x 64 per direction and
layer). On random data of IMDB's shapes (imdb_shapes.py); prints seconds per epoch (training only).

    python benches/peers/imdb_bilstm_torch.py [--samples 25000] [--epochs 1] [--threads 2]
"""
from imdb_shapes import parse_args, random_imdb, train_torch


def main():
    a = parse_args(__doc__.splitlines()[0])
    import torch
    from torch import nn
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    max_features, maxlen = 20000, 200
    x, y = random_imdb(a.samples, maxlen, max_features)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(max_features, 128)
            self.lstm1 = nn.LSTM(128, 64, batch_first=True, bidirectional=True)
            self.lstm2 = nn.LSTM(128, 64, batch_first=True, bidirectional=True)
            self.out = nn.Linear(128, 1)

        def forward(self, ids):
            h, _ = self.lstm1(self.embedding(ids))
            _, (last, _) = self.lstm2(h)
            return self.out(torch.cat([last[0], last[1]], 1))

    train_torch(Net(), x, y, a.epochs)


if __name__ == "__main__":
    main()
