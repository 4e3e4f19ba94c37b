maxpool padding=2147483647
linear fc out=10
softmax_ce
