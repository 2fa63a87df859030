# The --native demo (docs/native.md's screenshot): R code whose time goes to compiled code,
# R's own (sort), BLAS (crossprod) and PCRE (grepl).
# Usage: Rscript xrtop/demo/native.R [SECONDS]
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 10
set.seed(1)
v <- runif(1e6)
m <- matrix(runif(300 * 300), 300)
words <- paste0("w", sample.int(1e6, 1e5), "x")
rank_values <- function() sort(v)
fit_model <- function() crossprod(m)
find_words <- function() grepl("w1[0-9]*7x", words, perl = TRUE)
analyse <- function() {
  rank_values()
  fit_model()
  find_words()
}
deadline <- proc.time()[[3]] + seconds
while (proc.time()[[3]] < deadline) analyse()
