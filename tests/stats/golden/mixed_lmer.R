# Regenerates mixed_lmer.csv: reference values of linear mixed models fitted by lme4 with
# lmerTest's Satterthwaite and pbkrtest's Kenward-Roger degrees of freedom, on the bundled
# study's tau = 1 task-aware KD units (kd_units_tau1.csv).
#
#   cd tests/stats/golden && Rscript mixed_lmer.R
#
# Every value is written beside the exact R expression that produced it (column `call`,
# where `d` is read.csv("kd_units_tau1.csv")). R is not a runtime or CI dependency: the tests
# read the CSV. Written with R 4, lme4 1.1.31, lmerTest 3.1.3, pbkrtest 0.5.2.
suppressMessages(library(lmerTest))

d <- read.csv("kd_units_tau1.csv")
models <- list(
  task_student = "gain ~ log2_size + factor(method) + (1|task) + (1|student)",
  student_pair_pairtask = "gain ~ log2_size + factor(method) + (1|student) + (1|pair) + (1|pair:task)",
  teacher_slope = "gain ~ log2_size + factor(method) + (1 + log2_size|teacher)",
  agreement = "gain ~ agreement + log2_size + (1|task) + (1|student)",
  teacher_score = "gain ~ teacher_score + log2_size + factor(method) + (1|task) + (1|student)"
)
fits <- list(
  list(model = "task_student", reml = TRUE, ddf = c("Satterthwaite", "Kenward-Roger")),
  list(model = "task_student", reml = FALSE, ddf = "Satterthwaite"),
  list(model = "student_pair_pairtask", reml = TRUE, ddf = c("Satterthwaite", "Kenward-Roger")),
  list(model = "teacher_slope", reml = TRUE, ddf = "Satterthwaite"),
  list(model = "agreement", reml = TRUE, ddf = "Satterthwaite"),
  list(model = "teacher_score", reml = TRUE, ddf = "Satterthwaite")
)

rows <- list()
add <- function(model, domain, reml, ddf, quantity, term, value, call) {
  rows[[length(rows) + 1]] <<- data.frame(
    model = model, domain = domain, reml = reml, ddf = ddf, quantity = quantity, term = term,
    value = sprintf("%.17g", value), call = call
  )
}

for (spec in fits) {
  for (domain in c("math", "commonsense")) {
    fit_call <- sprintf('lmerTest::lmer(%s, data = subset(d, domain == "%s"), REML = %s)',
                        models[[spec$model]], domain, spec$reml)
    m <- suppressMessages(suppressWarnings(eval(parse(text = fit_call))))
    for (ddf in spec$ddf) {
      call <- sprintf('summary(%s, ddf = "%s")$coefficients', fit_call, ddf)
      table <- summary(m, ddf = ddf)$coefficients
      for (term in rownames(table)) {
        add(spec$model, domain, spec$reml, ddf, "estimate", term, table[term, "Estimate"], call)
        add(spec$model, domain, spec$reml, ddf, "se", term, table[term, "Std. Error"], call)
        add(spec$model, domain, spec$reml, ddf, "df", term, table[term, "df"], call)
        add(spec$model, domain, spec$reml, ddf, "p_val", term, table[term, "Pr(>|t|)"], call)
      }
    }
    vc <- as.data.frame(VarCorr(m))
    call <- sprintf("as.data.frame(VarCorr(%s))$vcov", fit_call)
    for (i in seq_len(nrow(vc))) {
      term <- paste(na.omit(c(vc$grp[i], vc$var1[i], vc$var2[i])), collapse = "|")
      add(spec$model, domain, spec$reml, "", "variance", term, vc$vcov[i], call)
    }
    add(spec$model, domain, spec$reml, "", "log_lik", "", as.numeric(logLik(m)),
        sprintf("as.numeric(logLik(%s))", fit_call))
    add(spec$model, domain, spec$reml, "", "singular", "", as.numeric(isSingular(m)),
        sprintf("as.numeric(lme4::isSingular(%s))", fit_call))
  }
}
write.csv(do.call(rbind, rows), "mixed_lmer.csv", row.names = FALSE)
