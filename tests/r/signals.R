# Observes signals while it computes: SIGCHLD from system(), SIGINT as R's interrupt
# condition, and whatever signal ends it. Writes what it saw, line by line, to OUTFILE.
# Usage: Rscript signals.R MODE OUTFILE
#   MODE system: run system() 200 times and record the exit codes
#   MODE interrupt: compute until SIGINT arrives (3 times), recording each interrupt
#   MODE fork: parallel::mclapply over 8 items in 2 forked workers, record the results
#   MODE wait: compute until killed (SIGALRM, SIGUSR1, SIGTERM end R)
args <- commandArgs(trailingOnly = TRUE)
mode <- args[[1]]
outfile <- args[[2]]
log <- function(...) cat(..., "\n", sep = "", file = outfile, append = TRUE)
work <- function(n) { s <- 0; for (i in seq_len(n)) s <- s + sqrt(i); s }
path <- Sys.getenv("XRTOP_READY")
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
# With XRTOP_GO set, wait for that file (xrtop is attached) before the work starts.
go <- Sys.getenv("XRTOP_GO")
if (nzchar(go)) while (!file.exists(go)) Sys.sleep(0.005)
if (mode == "system") {
  codes <- vapply(1:200, function(i) system("exit 3"), integer(1))
  log("system ", paste(table(codes), names(table(codes)), collapse = ","))
  log("work ", work(1e5))
} else if (mode == "interrupt") {
  got <- 0
  while (got < 3) {
    got <- got + tryCatch({ repeat work(1e4) }, interrupt = function(e) { log("interrupt ", class(e)[[1]]); 1 })
  }
  log("done ", got)
} else if (mode == "fork") {
  res <- parallel::mclapply(1:8, function(i) work(2e5 + i), mc.cores = 2)
  log("fork ", sprintf("%.3f", sum(unlist(res))))
  res <- parallel::mclapply(1:8, function(i) work(2e5 + i), mc.cores = 2)
  log("fork ", sprintf("%.3f", sum(unlist(res))))
} else {
  log("waiting")
  repeat work(1e4)
}
