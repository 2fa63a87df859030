# Every way R names a frame: pkg::f, pkg:::f, x$f, x[["f"]], x[[1]], anonymous functions,
# lapply/do.call/Reduce/Map, tryCatch, S3 and S4 dispatch, .Call frames, deep recursion.
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60

spin <- function(n = 2000) { s <- 0; for (i in seq_len(n)) s <- s + i; s }
deep <- function(n) if (n == 0) spin() else deep(n - 1)
obj <- list(method = function() spin(), other = function() deep(5))
area <- function(shape) UseMethod("area")
area.square <- function(shape) spin()
setClass("Circle", representation(r = "numeric"))
invisible(setGeneric("perimeter", function(shape) standardGeneric("perimeter")))
setMethod("perimeter", "Circle", function(shape) spin())
circle <- new("Circle", r = 1)
# A .Call frame: R's own C entry points behind base functions.
call_frame <- function() for (i in 1:50) stats::runif(200)
ns_internal <- function() tools:::file_path_sans_ext(rep("a.R", 200))

round_of_shapes <- function() {
  base::Reduce(function(a, b) { spin(50); a + b }, 1:20)
  obj$method()
  obj[["method"]]()
  obj[[2]]()
  (function() spin())()
  lapply(1:3, function(i) spin(500))
  do.call(spin, list(1000))
  Map(function(x) spin(300), 1:3)
  tryCatch(spin(), error = function(e) NULL)
  area(structure(list(), class = "square"))
  perimeter(circle)
  deep(30)
  call_frame()
  ns_internal()
}

# With XRTOP_RPROF set, R's own profiler records the same run (ground truth for the tests).
# Builtin frames exist only while Rprof is on, so both profilers then see the same contexts.
rprof <- Sys.getenv("XRTOP_RPROF")
if (nzchar(rprof)) {
  interval <- if (getRversion() >= "4.3.0") 0.01 else 0.002
  Rprof(rprof, interval = interval)
}
round_of_shapes()  # the byte-code compiler runs on first use; let it finish first
path <- Sys.getenv("XRTOP_READY")
deadline <- Sys.time() + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
repeat {
  if (Sys.time() > deadline) break
  round_of_shapes()
}
if (nzchar(rprof)) Rprof(NULL)
