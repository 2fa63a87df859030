# Varied code whose stacks rarely repeat. MODE trees (the default): seeded random call
# trees 10-40 deep that end in one of many base R tasks (model fits, optimisers, S4, apply
# families, regular expressions); MODE tasks: a pass through those tasks in turn, called
# from top level (the stacks of base R's own functions), again and again.
# Usage: Rscript varied.R [SECONDS] [SEED] [MODE]
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args) >= 1) as.numeric(args[[1]]) else 60
set.seed(if (length(args) >= 2) as.integer(args[[2]]) else 20L)
mode <- if (length(args) >= 3) args[[3]] else "trees"
stopifnot(mode %in% c("trees", "tasks"))
tasks <- list(
  fit = function() lm(y ~ x, data.frame(x = 1:100, y = rnorm(100))),
  glmfit = function() glm(am ~ wt, binomial, mtcars),
  opt = function() optim(c(1, 1), function(p) sum((p - c(3, -1))^2)),
  root = function() uniroot(function(x) x^3 - x - 1, c(1, 2))$root,
  quad = function() integrate(function(x) exp(-x^2), -2, 2)$value,
  regex = function() gsub("[aeiou]", "_", sprintf("word%03d%s", 1:200, "abcde")),
  split = function() unlist(strsplit(rep("a,b;c d", 150), "[,; ]")),
  sapply = function() sapply(1:60, function(i) sum(sort(runif(15)))),
  vapply = function() vapply(split(1:400, rep(1:8, 50)), median, numeric(1)),
  mapply = function() mapply(function(a, b) a:b, 1:30, 31:60),
  reduce = function() Reduce(`+`, 1:300, accumulate = TRUE),
  solve = function() solve(crossprod(matrix(rnorm(400), 20)) + diag(20)),
  table = function() table(sample(letters[1:4], 400, TRUE), sample(1:3, 400, TRUE)),
  agg = function() aggregate(v ~ g, data.frame(v = 1:120, g = rep(1:6, 20)), mean),
  merge = function() merge(data.frame(k = 1:60, a = 1), data.frame(k = 30:90, b = 2)),
  s4 = function() {
    setClass("Pt", representation(x = "numeric"), where = globalenv())
    validObject(new("Pt", x = runif(3)))
  },
  trycatch = function() tryCatch(stop("no"), error = function(e) conditionMessage(e)),
  format = function() format(as.Date("2020-01-01") + 0:120, "%d %b %Y"),
  outer = function() outer(1:25, 1:25, function(a, b) (a + b) %% 5),
  quantile = function() quantile(rnorm(500), c(0.05, 0.5, 0.95))
)
hops <- c("ant", "bee", "cow", "doe", "elk", "fox", "gnu", "hen", "ibis", "jay", "kiwi", "lynx")
# A hop calls the next one directly, through an apply function, do.call, local or tryCatch.
make_hop <- function() function(depth, task) {
  if (depth <= 0L) return(task())
  nxt <- get(sample(hops, 1L))
  switch(sample.int(5L, 1L),
    nxt(depth - 1L, task),
    lapply(1L, function(i) nxt(depth - 1L, task))[[1L]],
    do.call(nxt, list(depth - 1L, task)),
    local(nxt(depth - 1L, task)),
    tryCatch(nxt(depth - 1L, task), error = function(e) NULL)
  )
}
for (h in hops) assign(h, make_hop())
# With XRTOP_PROGRESS, each tree (or task) done appends "END_TIME 1" there (for bench/);
# it ends at its deadline, or once the file XRTOP_STOP names exists.
progress <- Sys.getenv("XRTOP_PROGRESS")
stop_file <- Sys.getenv("XRTOP_STOP")
path <- Sys.getenv("XRTOP_READY")
deadline <- Sys.time() + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
turn <- 0L
while (Sys.time() < deadline && !(nzchar(stop_file) && file.exists(stop_file))) {
  if (mode == "trees") {
    get(sample(hops, 1L))(sample(4:14, 1L), tasks[[sample.int(length(tasks), 1L)]])
  } else {
    turn <- turn %% length(tasks) + 1L
    tasks[[turn]]()
  }
  if (nzchar(progress)) cat(sprintf("%.6f 1\n", as.numeric(Sys.time())), file = progress, append = TRUE)
}
