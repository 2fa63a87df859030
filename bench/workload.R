# Benchmark workload: a deterministic 70/30 split of time between work_a and work_b, at a
# chosen stack depth, that measures its own split and throughput from inside R.
#
# Usage: Rscript workload.R DEPTH SECONDS RESULT [STOP_FILE [RPROF_FILE RPROF_INTERVAL
#        [RPROF_SWITCH]]]
#
# It runs for SECONDS, or until STOP_FILE exists (checked once a round, a few ms apart).
# With RPROF_FILE, R's own profiler writes there from the start; with RPROF_SWITCH, only
# while a file of that name exists (checked once a round), the Nth time to RPROF_FILE.N,
# so a harness can alternate profiled and unprofiled windows in one process.
#
# Each round calls work_a(7 * u) then work_b(3 * u) at the bottom of a chain of `descend`
# calls, so R's stack (as Rprof counts frames) is exactly DEPTH frames deep while either
# works: run -> timed -> descend x (DEPTH - 3) -> work_a/work_b. The unit count `u` (not a
# whole number) varies from round to round by a fixed pseudo-random sequence, so a sampler
# ticking at a fixed rate cannot alias with the rounds. Both work functions run the same
# byte-compiled loop, so time is split 70/30 up to noise; the script measures the real split
# with Sys.time() right around each work call (at the bottom of the chain) and writes, per
# round: end time (seconds since the epoch), units done, seconds in work_a, seconds in
# work_b. The harness turns that into throughput and the true share in
# exactly the windows a profiler was attached. The header line gives the seconds Rprof was
# on in all.
#
# The PID is written to the file named by XRTOP_READY right before the measured loop, after
# a warm-up that byte-compiles everything (the JIT compiles a closure on its second call).
args <- commandArgs(trailingOnly = TRUE)
depth <- as.integer(args[[1]])
seconds <- as.numeric(args[[2]])
result <- args[[3]]
stop_file <- if (length(args) >= 4) args[[4]] else ""
rprof_file <- if (length(args) >= 5) args[[5]] else ""
rprof_interval <- if (length(args) >= 6) as.numeric(args[[6]]) else 0.01
rprof_switch <- if (length(args) >= 7) args[[7]] else ""
stopifnot(depth >= 4)

UNIT <- 2000L # loop iterations per unit; a round is 50 to 150 units, a few ms

# Two identical byte-compiled loops under different names (same speed per unit).
work_a <- function(n) {
  x <- 0
  for (i in seq_len(n)) x <- x + i * 1e-9
  x
}
work_b <- function(n) {
  x <- 0
  for (i in seq_len(n)) x <- x + i * 1e-9
  x
}
# The work functions are called by name: Rprof names a frame by its call's head.
# The clock is read at the bottom of the chain, right around the work function: time spent
# calling down and returning up the chain (a few percent of a round at 37 frames) belongs
# to neither function, for R's account as for a profiler's samples.
descend <- function(k, a, n) {
  if (k > 0L) {
    descend(k - 1L, a, n)
  } else {
    t0 <- as.numeric(Sys.time())
    if (a) work_a(n) else work_b(n)
    as.numeric(Sys.time()) - t0
  }
}
timed <- function(a, n) descend(depth - 4L, a, n)
run <- function(units) {
  ta <- timed(TRUE, as.integer(7 * units * UNIT))
  tb <- timed(FALSE, as.integer(3 * units * UNIT))
  c(ta, tb)
}
# Frames while a work function loops: run, timed, descend x (depth - 3), work_x = depth.

# A small linear congruential generator: the same unit sequence in every run. Units are
# drawn from a continuum, not whole numbers: with rounds of whole units every round
# boundary, and every boundary between work_a and work_b, fell on a grid of 10 units
# (~0.5 ms), and a sampler ticking at a multiple of that grid kept landing on the same
# points of it for a whole window, so windows' shares scattered more than sampling noise.
state <- 12345
next_units <- function() {
  state <<- (state * 1103515245 + 12345) %% 2147483648
  5 + 10 * state / 2147483648 # 5 to 15 units: rounds of varying length
}

for (i in 1:5) run(1) # warm-up: byte-compile every closure
max_rounds <- 200000L
ends <- numeric(max_rounds)
units <- numeric(max_rounds)
ta <- numeric(max_rounds)
tb <- numeric(max_rounds)

profiling <- FALSE
rprof_on_at <- 0
rprof_seconds <- 0
rprof_windows <- 0L
rprof <- function(on) {
  now <- as.numeric(Sys.time())
  if (on) {
    rprof_windows <<- rprof_windows + 1L
    to <- if (nzchar(rprof_switch)) paste0(rprof_file, ".", rprof_windows) else rprof_file
    Rprof(to, interval = rprof_interval)
    rprof_on_at <<- now
  } else {
    Rprof(NULL)
    rprof_seconds <<- rprof_seconds + now - rprof_on_at
  }
  profiling <<- on
}
if (nzchar(rprof_file) && !nzchar(rprof_switch)) rprof(TRUE)
ready <- Sys.getenv("XRTOP_READY")
if (nzchar(ready)) writeLines(as.character(Sys.getpid()), ready)
started <- as.numeric(Sys.time())
deadline <- started + seconds
k <- 0L
repeat {
  if (nzchar(rprof_switch) && file.exists(rprof_switch) != profiling) {
    rprof(!profiling)
  }
  u <- next_units()
  t <- run(u)
  now <- as.numeric(Sys.time())
  k <- k + 1L
  ends[k] <- now
  units[k] <- u
  ta[k] <- t[[1]]
  tb[k] <- t[[2]]
  if (now >= deadline || k >= max_rounds) break
  if (nzchar(stop_file) && file.exists(stop_file)) break
}
if (profiling) rprof(FALSE)
stopped <- as.numeric(Sys.time())
out <- file(result, "w")
writeLines(
  sprintf(
    "# depth %d started %.6f stopped %.6f rprof_seconds %.6f",
    depth, started, stopped, rprof_seconds
  ),
  out
)
writeLines(
  sprintf("%.6f %.6f %.7f %.7f", ends[1:k], units[1:k], ta[1:k], tb[1:k]),
  out
)
close(out)
