# Workloads in compiled code for tests/test_native_live.py.
# Usage: Rscript native.R MODE [SO] [RPROF_FILE]
#   MODE dotC / dotCall: outer_r -> inner_r -> .C("my_c_fun") / .Call("my_call_fun") of SO,
#   which spins in my_leaf; with RPROF_FILE, a short run under R's Rprof first.
#   MODE forkC: two mclapply workers (forks) each run dotC's outer_r; the parent waits.
#   MODE crossprod, sort, grepl, fread, forder: that work in a loop, under work_MODE.
args <- commandArgs(trailingOnly = TRUE)
mode <- args[[1]]
so <- if (length(args) > 1) args[[2]] else ""
prof <- if (length(args) > 2) args[[3]] else ""
ready <- function() {
  path <- Sys.getenv("XRTOP_READY")
  if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
}
if (mode %in% c("dotC", "dotCall", "forkC")) {
  # Not compiled to byte code: R then opens a context for .C / .Call even without Rprof,
  # so that R's own profile and xrtop's name the same frames.
  invisible(compiler::enableJIT(0))
  dyn.load(so)
  inner_r <- function(n) {
    if (mode == "dotCall") .Call("my_call_fun", as.integer(n)) else .C("my_c_fun", as.integer(n))
  }
  outer_r <- function(n) inner_r(n)
  if (nzchar(prof)) {
    Rprof(prof, interval = 0.002)
    outer_r(200L)
    Rprof(NULL)
  }
  ready()
  if (mode == "forkC") {
    invisible(parallel::mclapply(1:2, function(i) outer_r(2000000L), mc.cores = 2))
  } else {
    outer_r(2000000L)  # hours in my_leaf
  }
} else {
  set.seed(1)
  m <- matrix(runif(400 * 400), 400)
  v <- runif(2e6)
  words <- paste0("w", sample.int(1e6, 2e5), "x")
  csv <- tempfile(fileext = ".csv")
  if (mode %in% c("fread", "forder")) {
    library(data.table)
    setDTthreads(1)
    dt <- data.table(a = sample.int(1e6, 1e6, TRUE), b = runif(1e6))
    fwrite(dt, csv)
  }
  work <- switch(mode,
    crossprod = function() crossprod(m),
    sort = function() sort(v),
    grepl = function() grepl("w1[0-9]*7x", words, perl = TRUE),
    fread = function() fread(csv, nThread = 1),
    forder = function() data.table:::forderv(dt, c("a", "b"))
  )
  work_loop <- function() repeat work()
  ready()
  work_loop()
}
