"""The toy persona models behind the seed argument ("bits of prior vs bits of evidence"), made computable.

- `bayes`: post-training as Bayesian conditioning on observed behaviour; closed forms, pure numpy.
- `gd`: the same personas as a softmax trained by gradient descent, with behaviour parameters shared across
  contexts; reduces to `bayes` in a derived limit.
- `fit`: both models fitted to a measured run's persistence curves (`hyperstition toy fit RUN`).
- `figures`: the canonical figures of the argument (`hyperstition toy plot`).
"""
