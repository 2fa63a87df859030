# R busy in compiled code, for the native unwinder's ground truth (a test stops it with
# SIGSTOP wherever it is). Usage: Rscript native_busy.R sort|grepl|crossprod|forder|fread|clock
# (clock: reads the time over and over, in the kernel's vDSO much of the time)
args <- commandArgs(trailingOnly = TRUE)
what <- args[[1]]
work <- switch(what,
  sort = {
    x <- runif(2e6)
    function() sort(x)
  },
  grepl = {
    x <- paste0("row", sample.int(1e6), "value", sample.int(1e6))
    function() grepl("9[0-9]+value1", x)
  },
  crossprod = {
    m <- matrix(runif(4e6), 2000)
    function() crossprod(m)
  },
  forder = {
    library(data.table)
    setDTthreads(1)
    d <- data.table(a = sample.int(1e6, 2e6, TRUE), b = runif(2e6))
    function() d[order(a, b)]
  },
  clock = function() for (i in 1:1000) Sys.time(),
  fread = {
    library(data.table)
    setDTthreads(1)
    file <- tempfile(fileext = ".csv")
    fwrite(data.frame(a = 1:1e6, b = runif(1e6), c = "text"), file)
    function() fread(file)
  }
)
path <- Sys.getenv("XRTOP_READY")
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
repeat work()
