"""The arena: blind pairwise judgement of strategies by people, and ratings with honest intervals."""
