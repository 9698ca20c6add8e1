"""Label review, what to label next and how many labels are enough: `review` (label issues from out-of-fold or
training-dynamics probabilities), `select` and `learning_curve`."""
