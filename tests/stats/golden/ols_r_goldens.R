# Regenerates tests/stats/golden/ols_r.csv: reference values of kdanalysis.stats.ols's
# cluster-robust estimators, computed by R on the bundled study's tau = 1 task-aware KD units.
# Run from the repository root:  Rscript tests/stats/golden/ols_r_goldens.R
# (R 4.x with clubSandwich and sandwich; Debian: r-cran-clubsandwich r-cran-sandwich).
# Each row keeps the R command that produced its values (column r_command).
suppressPackageStartupMessages({
  library(clubSandwich)
  library(sandwich)
})

d <- read.csv("tests/stats/golden/kd_units_tau1.csv")
d$double_size <- 2 * d$log2_size  # rank-deficient design: a column 2x another ...
d$const <- 1                      # ... and a constant beside the intercept
formula_text <- "gain ~ log2_size + factor(method) + factor(task)"
rank_text <- "gain ~ log2_size + double_size + const + factor(method) + factor(task)"
# cluster fixed effects: each student's indicator makes I - H_gg singular (generalised inverse root)
fe_text <- "gain ~ teacher_score + factor(method) + factor(task) + factor(student)"

patsy_term <- function(name) {
  # R's treatment contrasts name factor(x)level; patsy names C(x)[T.level]
  name <- sub("^\\(Intercept\\)$", "Intercept", name)
  sub("^factor\\(([^)]+)\\)(.+)$", "C(\\1)[T.\\2]", name)
}

rows <- list()
add <- function(case, domain, cluster, vcov, term, estimate, se, df, p_val, command) {
  rows[[length(rows) + 1]] <<- data.frame(
    case = case, domain = domain, cluster = cluster, vcov = vcov, term = patsy_term(term),
    estimate = estimate, se = se, df = df, p_val = p_val, r_command = command
  )
}

for (domain in c("commonsense", "math")) {
  m <- d[d$domain == domain, ]
  setup <- sprintf('m <- subset(read.csv("tests/stats/golden/kd_units_tau1.csv"), domain == "%s"); f <- lm(%s, data = m)', domain, formula_text)
  f <- lm(as.formula(formula_text), data = m)
  b <- coef(f)
  for (cl in c("pair", "student")) {
    # CR2 with Satterthwaite df (clubSandwich)
    cmd <- sprintf('%s; coef_test(f, vcov = "CR2", cluster = m$%s, test = "Satterthwaite")', setup, cl)
    ct <- coef_test(f, vcov = "CR2", cluster = m[[cl]], test = "Satterthwaite")
    add("main", domain, cl, "CR2", ct$Coef, ct$beta, ct$SE, ct$df_Satt, ct$p_Satt, cmd)
    # CR1: sandwich::vcovCL with HC1 (G/(G-1) (n-1)/(n-k)), t(G - 1)
    g <- length(unique(m[[cl]]))
    cmd <- sprintf('%s; V <- sandwich::vcovCL(f, cluster = ~%s, type = "HC1"); se <- sqrt(diag(V)); df <- length(unique(m$%s)) - 1; p <- 2 * pt(-abs(coef(f) / se), df)', setup, cl, cl)
    se <- sqrt(diag(vcovCL(f, cluster = as.formula(paste0("~", cl)), type = "HC1")))
    add("main", domain, cl, "CR1", names(b), b, se, g - 1, 2 * pt(-abs(b / se), g - 1), cmd)
    # CR3: clubSandwich's CR3 times (G - 1)/G (statsmodels' and pyfixest's CRV3), t(G - 1)
    cmd <- sprintf('%s; G <- length(unique(m$%s)); V <- (G - 1) / G * as.matrix(vcovCR(f, cluster = m$%s, type = "CR3")); se <- sqrt(diag(V)); p <- 2 * pt(-abs(coef(f) / se), G - 1)', setup, cl, cl)
    se <- sqrt(diag((g - 1) / g * as.matrix(vcovCR(f, cluster = m[[cl]], type = "CR3"))))
    add("main", domain, cl, "CR3", names(b), b, se, g - 1, 2 * pt(-abs(b / se), g - 1), cmd)
  }
  # two-way teacher x student, CR1 components (Cameron-Gelbach-Miller), negative eigenvalues of
  # the sum set to 0 (fix = TRUE; both domains need it), t(min(G) - 1)
  g <- min(length(unique(m$teacher)), length(unique(m$student)))
  cmd <- sprintf('%s; V <- sandwich::vcovCL(f, cluster = ~teacher + student, multi0 = FALSE, type = "HC1", fix = TRUE); se <- sqrt(diag(V)); df <- min(length(unique(m$teacher)), length(unique(m$student))) - 1; p <- 2 * pt(-abs(coef(f) / se), df)', setup)
  V <- vcovCL(f, cluster = ~teacher + student, multi0 = FALSE, type = "HC1")
  stopifnot(min(eigen(V, symmetric = TRUE, only.values = TRUE)$values) < 0)  # the repair is exercised
  V <- vcovCL(f, cluster = ~teacher + student, multi0 = FALSE, type = "HC1", fix = TRUE)
  se <- sqrt(diag(V))
  add("main", domain, "teacher+student", "CR1 two-way", names(b), b, se, g - 1, 2 * pt(-abs(b / se), g - 1), cmd)
  # rank-deficient design: lm gives NA for the aliased coefficients; CR2 on the identified ones
  r <- lm(as.formula(rank_text), data = m)
  ct <- coef_test(r, vcov = "CR2", cluster = m$pair, test = "Satterthwaite")
  setup_rank <- sprintf('m <- subset(read.csv("tests/stats/golden/kd_units_tau1.csv"), domain == "%s"); m$double_size <- 2 * m$log2_size; m$const <- 1; f <- lm(%s, data = m)', domain, rank_text)
  cmd <- sprintf('%s; coef(f) (NA = aliased); coef_test(f, vcov = "CR2", cluster = m$pair, test = "Satterthwaite")', setup_rank)
  aliased <- names(coef(r))[is.na(coef(r))]
  add("rank_deficient", domain, "pair", "CR2", c(ct$Coef, aliased), c(ct$beta, rep(NA, length(aliased))),
      c(ct$SE, rep(NA, length(aliased))), c(ct$df_Satt, rep(NA, length(aliased))),
      c(ct$p_Satt, rep(NA, length(aliased))), cmd)
  # CR2 with cluster fixed effects (singular I - H_gg in every cluster but the reference one)
  e <- lm(as.formula(fe_text), data = m)
  ct <- coef_test(e, vcov = "CR2", cluster = m$student, test = "Satterthwaite")
  cmd <- sprintf('m <- subset(read.csv("tests/stats/golden/kd_units_tau1.csv"), domain == "%s"); f <- lm(%s, data = m); coef_test(f, vcov = "CR2", cluster = m$student, test = "Satterthwaite")', domain, fe_text)
  add("cluster_fixed_effects", domain, "student", "CR2", ct$Coef, ct$beta, ct$SE, ct$df_Satt, ct$p_Satt, cmd)
}

out <- do.call(rbind, rows)
write.csv(out, "tests/stats/golden/ols_r.csv", row.names = FALSE, na = "")
cat(sprintf("%d rows written (R %s, clubSandwich %s, sandwich %s)\n", nrow(out),
            getRversion(), packageVersion("clubSandwich"), packageVersion("sandwich")))
