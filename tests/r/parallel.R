# Parallel R: a target whose work runs in child R processes.
# Usage: Rscript parallel.R MODE [SECONDS [WORKERS]]
#   mclapply (WORKERS workers, default 2), mcparallel: forked workers; psock: makeCluster(2)
#   (Rscript workers);
#   callr: callr::r_bg; future: future multisession (2 workers);
#   waves: WORKERS mclapply workers of 0.4 s, again every 0.7 s;
#   storm: hundreds of short mclapply workers, one batch after another.
# Each worker runs `busy_worker` (a loop of named calls) until the time is up; the ready
# file (XRTOP_READY) is written once the workers are being started.
args <- commandArgs(trailingOnly = TRUE)
mode <- args[[1]]
seconds <- if (length(args) > 1) as.numeric(args[[2]]) else 30
workers <- if (length(args) > 2) as.integer(args[[3]]) else 2L
deadline <- proc.time()[[3]] + seconds
inner_step <- function() sum(sqrt(seq_len(2000)))
busy_worker <- function(until) {
  s <- 0
  while (proc.time()[[3]] < until) for (i in 1:20) s <- s + inner_step()
  s
}
path <- Sys.getenv("XRTOP_READY")
ready <- function() if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
if (mode == "mclapply") {
  ready()
  invisible(parallel::mclapply(seq_len(workers), function(i) busy_worker(deadline), mc.cores = workers))
} else if (mode == "mcparallel") {
  ready()
  jobs <- lapply(1:2, function(i) parallel::mcparallel(busy_worker(deadline)))
  invisible(parallel::mccollect(jobs))
} else if (mode == "psock") {
  cl <- parallel::makeCluster(2)
  ready()
  invisible(parallel::parLapply(cl, 1:2, function(i, until) {
    busy_worker <- function(until) {
      s <- 0
      while (proc.time()[[3]] < until) for (i in 1:20) s <- s + sum(sqrt(seq_len(2000)))
      s
    }
    busy_worker(until)
  }, deadline))
  parallel::stopCluster(cl)
} else if (mode == "callr") {
  ready()
  job <- callr::r_bg(function(seconds) {
    inner_step <- function() sum(sqrt(seq_len(2000)))
    busy_worker <- function(until) {
      s <- 0
      while (proc.time()[[3]] < until) for (i in 1:20) s <- s + inner_step()
      s
    }
    busy_worker(proc.time()[[3]] + seconds)
  }, list(seconds = seconds))
  job$wait()
} else if (mode == "future") {
  future::plan(future::multisession, workers = 2)
  ready()
  fs <- lapply(1:2, function(i) future::future(busy_worker(proc.time()[[3]] + seconds), globals = c("busy_worker", "inner_step", "seconds")))
  invisible(future::value(fs))
  future::plan(future::sequential)
} else if (mode == "waves") {
  ready()
  while (proc.time()[[3]] < deadline) {
    invisible(parallel::mclapply(seq_len(workers), function(i) busy_worker(proc.time()[[3]] + 0.4), mc.cores = workers))
    Sys.sleep(0.3)
  }
} else if (mode == "storm") {
  ready()
  while (proc.time()[[3]] < deadline) {
    invisible(parallel::mclapply(1:50, function(i) busy_worker(proc.time()[[3]] + 0.002), mc.cores = 50))
  }
} else {
  stop("unknown mode ", mode)
}
