"""Answers to the lessons' questions, by lesson number, in the order the questions are asked.

A lesson shows them (folded away) with MINIVIT_ANSWERS=1 or MINIVIT_SOLUTIONS=1; try the
questions first. Markdown, with $math$.
"""

ANSWERS = {
    1: [
        r"""$224/16 = 14$, so $N = 14^2 = 196$ patches of $3 \cdot 16^2 = 768$ numbers. With $P = 8$:
        $28^2 = 784$ patches of $192$ numbers. Attention's cost grows with $N^2$: $784^2 / 196^2 = 16$
        times more per layer (the linear layers' cost grows only with $N$, 4 times).""",
        r"""The transpose returns a view with permuted strides: the six-axis array is no longer laid out
        in memory in the order the final reshape reads it (the numbers of one patch are not next to
        each other). A reshape can only give a view when the new shape can be expressed with strides
        over the same memory; here it cannot, so NumPy copies.""",
        r"""That the embeddings form a smooth 2-D map of position: that the embedding of a point between
        two grid cells is roughly the blend of theirs. Learned embeddings of a trained ViT are close to
        that (lesson 11 shows their similarity maps); interpolating them is what transformers'
        `interpolate_pos_encoding` and lesson 10 do.""",
    ],
    2: [
        r"""Because $b$ is added to every row, every patch of every image: the same parameter is used
        $B \cdot N$ times, and the gradient of a shared parameter is the sum of the gradients of its
        uses.""",
        r"""With patch 4 and stride 2 on 10×10 there are 4×4 patches. Pixels in the outer two rows and
        columns (rows and columns 0, 1, 8, 9) belong to one patch along that axis; the others to two.
        So the four 2×2 corner blocks have exactly one copy, and the 6×6 centre block (rows and
        columns 2 to 7) has four; the edges in between have two.""",
        r"""The sum grows with the batch: twice the images, about twice the gradient, so the step size
        would depend on the batch size. Averaging the loss over the batch divides it by $B$, which
        makes the gradient an average and the learning rate mean the same thing at any batch size.""",
    ],
    3: [
        r"""Shuffling the patches and their position embeddings together changes nothing: attention
        treats its input as a set, and each token keeps its own position. Shuffling only the patches
        changes the logits: each patch now carries another position's embedding, so the model sees
        a different (scrambled) image.""",
        r"""Weight decay pulls weights towards zero, which acts as a prior that small weights are
        better. For the CLS token and position embeddings, zero is no better than any other value:
        they are learned inputs, not multipliers of inputs, and decaying them only erases what they
        learned (the same holds for biases and LayerNorm gains).""",
        r"""None becomes useless, but the CLS token loses its special role. minivit's mean pooling
        (`pool_forward(..., "mean")`) averages all $T = N + 1$ tokens, the CLS token's final state
        included, so the head reads it with weight $1/T$ like any patch, and it also enters every
        layer's attention as a key and value. Its gradient is therefore not zero: it is the gradient
        of one more learned token among $T$, no longer of the summary the head reads alone. Only if
        the CLS token were dropped from the sequence would its gradient be exactly zero.""",
    ],
    4: [
        r"""For `cifar-tiny`: $T = 65$, $D = 192$, 3 heads of $d = 64$. Attention's two products cost
        about $2 T^2 D = 2 \cdot 65^2 \cdot 192 \approx 1.6$ M multiply-adds per image and layer; the
        four projections $4 T D^2 \approx 9.6$ M and the MLP $8 T D^2 \approx 19$ M. Per head, $T^2 d$
        against one projection's $T D d$ (its share of $T D^2$) flips at $T = D$; but a layer has
        $12 T D^2$ of linear work against attention's $2 T^2 D$, so attention dominates the layer only
        beyond $T = 6D \approx 1{,}150$ tokens for $D = 192$. A patch size of 2 on CIFAR-10
        ($T = 257$) does not get there; high-resolution images with small patches do.""",
        r"""The Jacobian of a softmax over $T$ entries is $T \times T$ per row, and only its product
        with $g$ is needed: $y \odot (g - \langle g, y\rangle)$ costs $O(T)$ per row instead of
        $O(T^2)$ to build and $O(T^2)$ to multiply. One `cifar-tiny` layer at batch 128 has
        $128 \cdot 3 \cdot 65 = 24{,}960$ rows, so the Jacobians would be
        $24{,}960 \cdot 65^2 \cdot 4$ bytes $\approx 422$ MB per layer, against
        $24{,}960 \cdot 65 \cdot 4$ bytes $\approx 6.5$ MB for the probabilities themselves.""",
        r"""$P$ does not change: the softmax is invariant to adding a constant to a row. A bias of the
        key projection adds $\langle q_i, b_k \rangle$ to every score of row $i$ (the same for every
        key $j$), so it changes nothing and its gradient is exactly zero. The gradient checks see
        gradients of zero, measured as finite-difference noise, which is why they count elements
        below the noise floor separately.""",
    ],
    5: [
        r"""LayerNorm's output does not change when every feature of a row moves by the same amount
        (the mean is subtracted), so the derivative along the all-ones direction is zero:
        $\sum_i \partial L/\partial x_i = 0$. With the formula: $\sum_i (\hat g_i - \mathrm{mean}(\hat g)
        - \hat x_i\, \mathrm{mean}(\hat g \hat x)) = 0 - D\,\mathrm{mean}(\hat g \hat x)\,\mathrm{mean}(\hat x)
        = 0$ because $\hat x$ has mean zero. Numerically: `dx.sum(axis=-1)` is about 1e-16.""",
        r"""In a post-norm block every layer's output passes through a LayerNorm, so the gradient that
        reaches a lower layer has been multiplied by each LayerNorm's Jacobian on the way: there is no
        path on which it passes unchanged. Its size then depends on the scales of the activations at
        every layer, which is why post-norm transformers need learning-rate warmup and careful
        initialisation to train deep; pre-norm keeps the identity path clean.""",
        r"""With weights of standard deviation 0.02 in a $D = 192$ network, a linear layer scales its
        input's standard deviation by about $0.02 \sqrt{192} \approx 0.28$; the attention branch
        (values, then output projection) and the MLP (two layers) output roughly $0.28^2 \approx 0.08$
        of their (unit-variance, normalised) input, so each branch adds a small fraction to $h$. The
        network starts close to the identity map on $h$: training starts stable, and the branches
        grow as they learn something useful (lesson 7 measures this).""",
    ],
    6: [
        r"""The encoder layers hold almost all of it: 6 × 444,864 = 2.67 M of 2.69 M parameters, most
        in the MLPs (2/3 of each layer). The compute is also in the encoder, in proportion to
        parameters × tokens for the linear layers (each weight is used once per token, 65 times per
        image) plus attention's $T^2$ products; the classifier and the embeddings are a rounding
        error.""",
        r"""4.6 is $2 \ln 10$: logits that are far from uniform at initialisation, i.e. weights drawn
        too large (an `initializer_range` of 1 instead of 0.02, a missing $1/\sqrt{d}$ in attention),
        or a loss summed where it should be averaged over something. Lesson 7 plots the initial loss
        against the initialisation scale.""",
        r"""Because the backward pass is linear in its upstream gradient: for any loss,
        $\partial L/\partial \theta = J^\top\, \partial L/\partial\,\text{logits}$, with $J$ the
        Jacobian of the logits. Comparing $J^\top g$ for a random $g$ checks the whole of $J^\top$ in
        one direction (a random one, so a mistake almost surely shows), and the loss's own
        derivative is checked separately.""",
    ],
    7: [
        r"""$\operatorname{Var}(y_j) = \sum_i \operatorname{Var}(x_i w_{ij}) = n\, \sigma_x^2 \sigma_w^2$
        for independent zero-mean $x$ and $w$. With $\sigma_w = 1/\sqrt{n}$ it stays $\sigma_x^2$.
        With 20 layers and $\sigma_w = 2/\sqrt{n}$ the standard deviation grows by $2^{20} \approx 10^6$;
        with $0.5/\sqrt{n}$ it shrinks by the same factor.""",
        r"""With $\beta_2 = 0.999$, $v_t \approx (1 - 0.999^t)\, g^2$: after one step only 0.1% of the
        way to $g^2$. Without correction the denominator $\sqrt{v}$ is $\sqrt{0.001} \approx 0.03$ of
        its proper size, so the first steps are about 30 times too large (the correction of $m$ by
        $1-\beta_1$ shrinks them by 10, a net 3 times): a large early jump, exactly when warmup is
        meant to keep steps small.""",
        r"""Adam divides each coordinate by its own $\sqrt{\hat v}$. An L2 term $\lambda\theta$ added to
        the gradient is divided too, so parameters with large gradients are decayed less than those
        with small ones: the decay is no longer the uniform shrinkage weight decay is meant to be.
        AdamW shrinks every decayed parameter by the same factor $1 - \eta\lambda$ per step,
        independently of the gradient statistics.""",
        r"""The curve is flat at the left (steps too small to change the loss in so few steps), falls to
        a minimum, and rises (or the run diverges) at the right. A good learning rate for a long run
        usually sits a little below the minimum of a short sweep: a factor of 3 to 10 lower, because
        a long run must stay stable for far more steps, and warmup and decay change the picture.""",
    ],
    8: [
        r"""Because the schedule's shape (warmup, then a cosine that reaches its minimum at the end) is
        what makes the last steps fine-tune the weights at a small rate. Stopping the recipe's 100-epoch schedule
        after 10 minutes leaves the rate near its peak at the end: the weights are still moving fast
        and the accuracy is noisier and lower. Fitting the schedule to the budget gives the decay its
        turn.""",
        r"""With smoothing 0.1 over 10 classes the target is 0.91 on the true class and 0.01 on each
        other. The lowest loss is reached when the prediction equals that target: the entropy of the
        target, $-0.91 \ln 0.91 - 9 \cdot 0.01 \ln 0.01 \approx 0.086 + 0.414 = 0.50$.""",
        r"""The training accuracy is measured on augmented images (flips: the `cifar-cpu` preset does
        not crop; other recipes crop too), in training mode, averaged over the epoch while the model
        is still improving; validation runs on clean images at the end of the epoch, with the model
        as it is then. The average over the epoch pulls the training number down (the model at the
        end of an epoch is better than its average during it) and the augmentation too; the training
        images being the ones the model learns from pulls it up. Which wins depends on the run: in a
        two-minute `cifar-cpu` run (flips only) the two are close after one epoch, either way round;
        with stronger augmentation (crops, RandAugment, mixup) or within the first epoch the training
        number is usually below. Later the gap opens the other way as the model fits its training set.""",
    ],
    9: [
        r"""For one image each operation is a tiny kernel: the time is launch overhead (a few
        microseconds each, thousands per step) and host-device traffic, not arithmetic. A CPU runs
        the same small operations without launches, so it can be faster until the batch is large
        enough to fill the GPU.""",
        r"""A synchronisation empties the queue: the host waits for the 3 queued steps (60 ms) and then
        the GPU waits for the host to queue more. Once per step it costs the pipelining: the GPU idles
        while the host issues the next step's launches (a few ms with thousands of launches), so
        several ms to the full launch time per step. Read the loss every 50 steps and the cost is
        paid once per 50.""",
        r"""The elementwise chains first: GELU forward and backward, LayerNorm, the softmax with its
        scale, the optimizer update. Each is many launches and memory passes and one fused kernel.
        Test each against the reference (float64 where it supports it, and float32 within a stated
        tolerance), forward and backward, on awkward shapes, as the fused CPU kernels are tested.""",
    ],
    10: [
        r"""A random head maps the pretrained features to random logits, so the first gradients that
        reach the encoder are large and random: they push the pretrained features around before the
        head has learned anything. A zero head gives uniform predictions and a first gradient that
        updates only the head (the encoder's gradient is $W_{\text{head}}^\top g = 0$ at first), so
        the encoder moves only once the head carries signal.""",
        r"""Typically the gain from pretraining remains at 32 px but is smaller in absolute terms: the
        grid is 8×8 (64 tokens) instead of 12×12 (144). A step costs more than 2.25 times at 48 px
        because attention's cost grows with $T^2$: $(145/65)^2 \approx 5$ for the attention products,
        and the linear layers' $145/65 \approx 2.2$.""",
        r"""With 100 images per class a linear probe (few parameters) or a strong layer decay often
        wins: they cannot overfit much. With 5,000 images per class full finetuning usually wins:
        there is enough data to adapt every layer without memorising.""",
        r"""Bilinear: output $i$ at $x = (i + 0.5) n_{in}/n_{out} - 0.5$ mixes $\lfloor x\rfloor$ and
        $\lfloor x\rfloor + 1$ (clamped) with weights $1 - t$ and $t$. The accuracy difference is
        usually small: the learned table is smooth, and finetuning adapts it.""",
    ],
    11: [
        r"""Trust maps that are consistent across images of a class and that put the weight on the
        object; distrust maps that look the same for every image (the position or the border dominates)
        or that change with a small shift of the image. A map is misleading when the value vectors
        or the MLPs do the work: rollout sees only where attention points, not what is carried.""",
        r"""Usually the position similarity and the attention distance change most with training: the
        2-D structure of the position embeddings sharpens, and heads specialise into local and global
        ones. The filter components change less (they are few and low-frequency from early on).""",
        r"""Mostly yes: the bicubic resize keeps the smooth 2-D structure on the finer grid, and a short
        finetuning adjusts it without destroying it. The resized similarities are smoother than the
        original ones.""",
        r"""A convolution is local and translation-equivariant by construction; a ViT has to learn from
        data that nearby patches matter (the local heads in the attention distance) and where each
        patch lies (the 2-D structure of the position embeddings, section 2). Learning these priors
        takes data; with little data a CNN's built-in priors win.""",
    ],
    12: [
        r"""BatchNorm normalises with the mean and variance of the batch it sees: each rank's 32 images
        give other statistics than the 128 together, so each image's output, and its loss, depends on
        which shard it is in, and the mean of the shards' gradients is not the big batch's. The
        statistics must be all-reduced too (PyTorch's SyncBatchNorm: one more, small, all-reduce
        per BatchNorm layer in the forward pass). LayerNorm, the ViT's, normalises each token alone.""",
        r"""Yes, in minivit: the same training, only faster. Image i of the global batch mixes with
        image B-1-i whatever rank holds it (a rank whose partners sit on another rank augments them
        itself, as their own rank does: the same pixels, no communication), and whether and how a
        batch mixes is drawn from (seed, step), not from the rank. So 1, 2 and 4 ranks build the same
        mixed images and reach the same weights (tests/test_distributed.py). An engine that lets each
        rank pair images within its shard with its own random weights trains on other mixed images:
        equivalent only in distribution (each image still mixed with a random partner by a
        Beta-distributed weight), not step for step, so its results cannot be reproduced on another
        number of ranks.""",
        r"""Each rank's share shrinks to 2 images (130 tokens): its matrix products are too small to run
        near the cores' peak, while the all-reduce stays 2(N-1)/N S per rank, so its share of the
        step grows until it dominates. Practitioners grow the global batch with the ranks (the
        per-rank batch stays efficient), with the learning rate scaled up and a warmup (linear or
        square-root scaling; LARS/LAMB for very large batches), or accumulate gradients over several
        micro-batches before each all-reduce.""",
        r"""Every rank must receive the other ranks' contributions to every element: in total at least
        $(N-1)/N \cdot S$ bytes must arrive at each rank to reduce its part, and its reduced part
        must then reach the others, another $(N-1)/N \cdot S$; the ring meets this bound. It is the
        wrong choice for small messages, where its $2(N-1)$ latencies dominate: a tree or recursive
        doubling takes $\log_2 N$ steps, which is why MPI and NCCL pick the algorithm by size (and
        NCCL builds trees and rings across servers).""",
    ],
}
