"""The hints: what a wrong result's numbers showed, and the fix, said to the student."""

HINTS = {
    "missing_1_over_m": (
        "The values are m times too large (m = batch size). The loss is a mean over the batch, so a "
        "1/m belongs in the gradient exactly once: SoftmaxCrossEntropy.backward divides by N, and the "
        "simplified BatchNorm dx starts with 1 / (m * sqrt(var + eps))."
    ),
    "extra_1_over_m": (
        "The values are m times too small (m = batch size): a 1/m too many. A parameter's gradient is "
        "a *sum* over the batch (dy.sum(axis=0)), not a mean: the 1/m of the mean loss is already inside dy."
    ),
    "eps_outside_sqrt": (
        "xhat = (x - mu) / (sqrt(var) + eps) puts eps outside the square root; it belongs inside: "
        "xhat = (x - mu) / sqrt(var + eps), as in the paper and PyTorch (a derivation that writes (sigma + eps) has this slip)."
    ),
    "biased_running_var": (
        "running_var received the biased batch variance (divided by m). Normalise with the biased one, "
        "but store the unbiased one, var * m / (m - 1), in running_var (PyTorch's convention): eval mode "
        "then uses an estimate of the population variance."
    ),
    "batch_of_one": (
        "A batch of one went through BatchNorm in training mode. With m = 1 the variance is 0, xhat is 0, "
        "the output is beta and dx is 0 whatever x is: nothing is learned, m / (m - 1) divides by zero, and "
        "a gradient check at m = 1 cannot fail. Raise ValueError for m < 2 in training (eval mode is fine)."
    ),
    "grad_overwritten": (
        "The parameter's .grad was overwritten, not accumulated: what it held before backward is gone. "
        "Write p.grad += ... (never p.grad = ...): a parameter used twice, or two backward passes before a "
        "step, must receive the sum; optimizer.zero_grad() is what clears it."
    ),
    "unstable_softmax": (
        "exp overflowed on large logits (exp(1000) is inf; in float32 exp(89) already is), giving inf or "
        "nan. Subtract each row's maximum first: softmax(z) = softmax(z - max(z)), and compute "
        "log(sum(exp(z))) as max(z) + log(sum(exp(z - max(z))))."
    ),
    "log_of_softmax": (
        "The loss is inf for a label whose probability underflows to 0: log(softmax(z)) takes log(0). "
        "Compute the log-probability directly, log p_y = (z_y - max) - log(sum(exp(z - max))), never the log of "
        "a probability."
    ),
    "sum_over_batch": (
        "Right for a batch of one, wrong for a batch of several: a parameter's gradient sums the "
        "contributions of every example, dy.sum(axis=0) and x.T @ dy, not dy[0] or one row."
    ),
    "transposed": (
        "You got the transpose. Shapes: x (N, in), weight (in, out), dy (N, out): weight.grad = x.T @ dy "
        "is (in, out) and dx = dy @ weight.T is (N, in)."
    ),
    "sign_flipped": "The values have the wrong sign: check each minus sign (the gradient of -log p_y is p - onehot).",
    "missing_bias": "y matches x @ weight without the bias: add bias (shape (out,), broadcast over the batch).",
    "relu_times_output": (
        "dx = dy * y multiplies by the ReLU output itself. ReLU's derivative is 1 where x > 0 and 0 "
        "elsewhere: dx = dy * (x > 0) (or dy * (y > 0))."
    ),
    "input_modified": (
        "forward changed its input array in place (x[x < 0] = 0 or x *= ...). The caller may still need x "
        "(a node that fans out feeds it to other layers): build a new array, e.g. xp.maximum(x, 0)."
    ),
    "dtype_changed": (
        "float32 went in and another dtype came out. Keep the input's dtype: a float64 constant array, "
        "np.zeros without dtype=x.dtype or np.array(..., dtype=float) silently upcasts."
    ),
    "unbiased_normalisation": (
        "xhat was normalised with the unbiased variance (divided by m - 1). Normalise with the biased "
        "one, mean((x - mu)**2); only running_var stores the unbiased one."
    ),
    "gamma_times_x": "y = gamma * x + beta skips the normalisation: y = gamma * xhat + beta.",
    "naive_variance": (
        "The variance is wrong in float32 for data with a large mean and small spread: E[x^2] - E[x]^2 "
        "cancels catastrophically. Centre first, var = mean((x - mu)**2) (two passes)."
    ),
    "momentum_reversed": (
        "The running averages weight the old value by momentum. PyTorch's convention (and tinynet's): "
        "momentum is the weight of the new batch statistic, running = (1 - momentum) * running + momentum * batch."
    ),
    "running_not_updated": (
        "running_mean / running_var did not change in training: update them on every training forward "
        "(eval mode uses them)."
    ),
    "eval_uses_batch_stats": (
        "Eval mode normalised with the batch's own statistics. In eval mode use running_mean and "
        "running_var, and leave them unchanged."
    ),
    "eval_updates_running": "Eval mode changed running_mean / running_var: only training forwards update them.",
    "eps_twice": "eps was added twice in eval mode (running_var already plus eps, then eps again): add it once.",
    "eval_backward": (
        "In eval mode mean and variance are constants, so y is affine in x: dx = dy * gamma / sqrt(running_var + eps). "
        "The batch-statistics formula applies only in training mode."
    ),
    "stats_as_constants": (
        "dx treats the batch mean and variance as constants (dy * gamma / sqrt(var + eps)). In training they "
        "depend on x: add the dl/dvar and dl/dmu terms (the paper's Algorithm 1 backward)."
    ),
    "missing_dmu": "dx lacks the dl/dmu term: dx = dxhat * inv_std + dvar * 2 (x - mu) / m + dmu / m.",
    "missing_dvar": (
        "dx lacks the dl/dvar contribution: dvar = sum(dxhat * (x - mu)) * -1/2 * (var + eps)^(-3/2), and it "
        "enters both dmu (through mean(-2 (x - mu))) and dx (through 2 (x - mu) / m)."
    ),
    "sums_over_dy": (
        "The sums use dy where they need dxhat = dy * gamma (the check uses gamma != 1): "
        "dx = 1 / (m * sqrt(var + eps)) * (m * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))."
    ),
    "not_zeroed": (
        "Gradients piled up across steps: the second step used the sum of both steps' gradients. Call "
        "optimizer.zero_grad() (or model.zero_grad()) before model.backward in every step."
    ),
    "zeroed_after_backward": (
        "The gradients were zero when optimizer.step() ran: zero_grad() was called between backward and "
        "step. The order is forward, loss, zero_grad, backward, step."
    ),
    "no_skip_connection": (
        "No skip connection found: a residual block needs a node whose output feeds both the block and an "
        "Add that joins the block's output back, e.g. h = g.add(Linear..., x); s = g.add(Add(), g.add(f, h), h)."
    ),
    "refuse_bad_input": (
        "A layer refuses input it cannot take with TypeError (wrong dtype or not an array) or ValueError "
        "(wrong shape), naming the layer; tinynet.layer.check_input(self, x) does that for you."
    ),
    "not_finite": "The result contains inf or nan: look for an overflow, a division by zero or log(0).",
    "shape_mismatch": (
        "Two arrays whose shapes do not fit met in a product or a sum. Write each array's shape next to "
        "its line (x (N, in), weight (in, out), dy (N, out), ...): usually a transpose or an axis= is missing."
    ),
    "dy_modified": (
        "backward changed dy in place (dy *= ... or dy[...] = ...). The caller may still need dy (a node that fans "
        "out passes the same dy to several layers): compute dx as a new array."
    ),
    "xc_withheld": (
        "Your backward used xc (x - mu): that is the paper's form. The simplified form needs only xhat, inv_std, "
        "dy and gamma, and the grader hands your backward xc = None to make sure it is the simplified form."
    ),
    "flipped_kernel": (
        "The values match a convolution with the kernel flipped (weight[:, :, ::-1, ::-1]). A deep-learning "
        "convolution (PyTorch's, tinynet's) is a cross-correlation: y[n, o, i, j] = bias[o] + sum of "
        "weight[o, c, a, b] * xpad[n, c, i*s + a, j*s + b], so kernel tap (a, b) meets input (i*s + a, j*s + b), "
        "unflipped; im2col's column order (c, a, b) must be weight.reshape(O, -1)'s. col2im needs no flip either."
    ),
    "padding_dropped": (
        "The padding is missing from dx: forward read the padded input xpad of shape (N, C, H + 2p, W + 2p), so "
        "col2im adds the column gradients into a padded dxpad, and dx is its interior, "
        "dxpad[:, :, p:p + H, p:p + W]: not dxpad itself, nor its corner dxpad[:, :, :H, :W]. (In forward, the "
        "output size counts the padding too: Ho = (H + 2p - kh) // s + 1.)"
    ),
    "stride_arithmetic": (
        "The stride is misapplied. Output size: Ho = (H + 2p - kh) // s + 1 (floor, then + 1; likewise Wo), and "
        "window (i, j) starts at row i*s, column j*s of the padded input, so im2col gathers and col2im adds "
        "back at xpad[:, :, i*s + a, j*s + b] (as slices: a : a + s*(Ho - 1) + 1 : s). MaxPool2d's stride "
        "defaults to its kernel size."
    ),
    "pool_grad_to_all": (
        "MaxPool2d.backward gave dy to every element of each window (or dy / (k*k), average pooling's gradient). "
        "Only the window's maximum reached the output, so only it gets dy: remember in forward which element "
        "won (the argmax over the k*k taps) and in backward add dy there, 0 elsewhere (+=: overlapping windows "
        "can share a maximum)."
    ),
}
