# Frames whose names are longer than the first guess a string is read with (64 bytes): a
# function with a 150-character name, and x[["a 100-character string"]]().
# Usage: Rscript long_names.R [SECONDS]
args <- commandArgs(trailingOnly = TRUE)
seconds <- if (length(args)) as.numeric(args[[1]]) else 60
long_name <- strrep("f", 150)
long_key <- strrep("k", 100)
spin <- function(n = 20000) { s <- 0; for (i in seq_len(n)) s <- s + i; s }
assign(long_name, function() spin())
holder <- list()
holder[[long_key]] <- function() spin()
run <- eval(parse(text = sprintf(
  "function() { %s(); holder[[\"%s\"]]() }", long_name, long_key
)))
run()
path <- Sys.getenv("XRTOP_READY")
deadline <- Sys.time() + seconds
if (nzchar(path)) writeLines(as.character(Sys.getpid()), path)
while (Sys.time() < deadline) run()
