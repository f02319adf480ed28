//! Datasets: MNIST and Fashion-MNIST, downloaded once, cached, verified.
