"""ESP-NN in the compiled engine: the variants of an esp-tflite-micro engine and ESP-NN's scratch sizes.

esp-tflite-micro's CMakeLists compiles its kernels with ``-DESP_NN`` (a PRIVATE option of the component) and
replaces TFLM's ``add``, ``conv``, ``depthwise_conv``, ``fully_connected``, ``mul``, ``pooling`` and ``softmax``
kernels with ``kernels/esp_nn/*.cc``, which call Espressif's ESP-NN (a component-registry dependency). ESP-NN's
``esp_nn.h`` maps every entry point to one variant, chosen from sdkconfig: ``CONFIG_NN_OPTIMIZED`` with
``CONFIG_IDF_TARGET_ESP32S3`` (Xtensa assembly) or ``CONFIG_IDF_TARGET_ESP32P4``, ``CONFIG_NN_OPTIMIZED`` on
other chips (portable C "generic optimisations"), else ANSI C.

An esp-tflite-micro engine therefore holds three variants of the same model, with the same precomputed data:

* the reference kernels (``#if !ESP_NN``), as for a TFLM tree without ESP-NN;
* :data:`OPTIMIZED` (``ESP_NN`` on an ESP32-S3/P4 with optimisations): ESP-NN's calls, the scratch the
  ESP32-S3 functions ask for (:func:`s3_conv_scratch`, :func:`s3_depthwise_scratch`), no output over its
  input (the assembly kernels were not read for their write order);
* :data:`GENERIC` (``ESP_NN`` otherwise): ESP-NN's calls, the scratch of the ANSI C and generic functions (none for
  convolutions, a row of int32 for softmax), outputs over inputs as for the reference kernels (their loops
  were read: output row, column, channel, each written after its window is read).

Every ESP-NN scratch buffer is planned offline; ``model_init()`` also asks the linked ESP-NN for its size and
fails with the op's status where it is larger (another ESP-NN release, an ESP32-P4), instead of overrunning it.
"""

from __future__ import annotations

HEADER = "esp_nn.h"  # ESP-NN's public header: every entry point the engine calls
OPTIMIZED = "optimized"
GENERIC = "generic"
VARIANTS = (OPTIMIZED, GENERIC)

# The preprocessor conditions of the variants in the generated source, in order (#if, #elif, #else), as esp_nn.h
# selects its headers (after sdkconfig.h). The reference variant comes first.
REFERENCE_CONDITION = "!defined(ESP_NN) || !ESP_NN"
CONDITIONS = {
    OPTIMIZED: "defined(CONFIG_NN_OPTIMIZED) && "
               "(defined(CONFIG_IDF_TARGET_ESP32S3) || defined(CONFIG_IDF_TARGET_ESP32P4))",
    GENERIC: "",  # #else: ESP-NN's ANSI C (CONFIG_NN_ANSI_C) or generic functions
}
_OPTIMIZED_CHIPS = ("esp32s3", "esp32p4")


def variant_for(idf_target: str | None) -> str:
    """The variant an ESP-IDF build for ``idf_target`` (``IDF_TARGET``, e.g. ``"esp32s3"``) runs with ESP-NN and
    its default ``CONFIG_NN_OPTIMIZED``: :data:`OPTIMIZED` on the ESP32-S3/P4, :data:`GENERIC` on other chips."""
    return OPTIMIZED if (idf_target or "").lower() in _OPTIMIZED_CHIPS else GENERIC


SOURCE = "esp-nn 1.2.3 (espressif/esp-nn d45b843)"  # where the ESP32-S3 sizes below were read
_ALIGN_MARGIN = 64  # the ESP32-S3 convolution's alignment (16) + assembly pre/post access margin (48)


def _up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def s3_conv_scratch(input_hwc: tuple[int, int, int], filter_hw: tuple[int, int], output_hwc: tuple[int, int, int],
                    stride_hw: tuple[int, int], pad_hw: tuple[int, int]) -> int:
    """Bytes ``esp_nn_get_conv_scratch_size_esp32s3`` asks for (see :data:`SOURCE`).

    Args:
        input_hwc: Input height, width, channels.
        filter_hw: Filter height, width.
        output_hwc: Output height, width, channels.
        stride_hw: Strides.
        pad_hw: Padding (top/left, as TFLM computes it).
    """
    (ih, iw, ic), (fh, fw), (oh, ow, oc) = input_hwc, filter_hw, output_hwc
    (sh, sw), (ph, pw) = stride_hw, pad_hw
    if (fh, fw, ph, pw, sh, sw) == (1, 1, 0, 0, 1, 1):  # pointwise: channels padded to 8, a transpose buffer
        ch8 = _up(ic, 8)
        transpose = 0 if iw * ih < 8 else 2 * 8 * ch8
        return (iw * ih * ch8 if ic % 8 else 0) + ch8 * oc + transpose + _ALIGN_MARGIN
    row, window = fw * ic, fw * fh * ic
    if row < 16 <= window:  # im2col: filter sums, an aligned filter copy and one window
        aligned = _up(window, 16)
        return oc * 4 + 16 + oc * aligned + 16 + aligned + _ALIGN_MARGIN
    padded_input = 0 if ph == 0 and pw == 0 else (iw + 2 * pw) * (ih + 2 * ph) * ic
    filters = fw * fh * _up(ic, 16) * oc + _up(row, 16) * fh * oc
    pad_right = max(0, ow * sw + fw - 1 - iw)
    pad_bottom = max(0, oh * sh + fh - 1 - ih)
    boundary = (iw + pad_right) * (ih + pad_bottom) * ic if pad_right > 0 or pad_bottom > 0 else 0
    return padded_input + filters + boundary + _ALIGN_MARGIN + oc * 4


def s3_depthwise_scratch(input_hwc: tuple[int, int, int], filter_hw: tuple[int, int], ch_mult: int,
                         output_hw: tuple[int, int], stride_hw: tuple[int, int], pad_hw: tuple[int, int]) -> int:
    """Bytes ``esp_nn_get_depthwise_conv_scratch_size_esp32s3`` asks for (see :data:`SOURCE`)."""
    (ih, iw, c), (fh, fw), (oh, ow) = input_hwc, filter_hw, output_hw
    filter_size = fw * fh * c * ch_mult
    if ch_mult == 1 and c % 8 == 0:
        if (fh, fw) == (3, 3):
            return _s3_depthwise_3x3(input_hwc, output_hw, stride_hw, pad_hw, filter_size)
        total = 2 * (filter_size + iw * ih * c)  # int16 copies of filter and input
        return total + 32 if total <= 48 * 1024 else 2 * filter_size + 2 * iw * fh * c + 32
    if ch_mult == 1 and c > 3:  # channels padded to 8, int16 filter/input, output, bias, shifts, multipliers
        c8 = _up(c, 8)
        input_start = _up(fw * fh * c8 * 2, 16)
        out_start = _up(input_start + iw * ih * c8 * 2, 16)
        bias_start = _up(out_start + ow * oh * c8, 16)
        return bias_start + 3 * 4 * c8 + 16
    if ch_mult % 4 == 0:
        return 2 * (filter_size + iw * ih * c) + 32
    return 32


def _s3_depthwise_3x3(input_hwc: tuple[int, int, int], output_hw: tuple[int, int], stride_hw: tuple[int, int],
                      pad_hw: tuple[int, int], filter_size: int) -> int:
    """The 3x3, channel multiplier 1, channels % 8 == 0 branch of :func:`s3_depthwise_scratch`."""
    (ih, iw, c), (oh, ow), (sh, sw), (ph, pw) = input_hwc, output_hw, stride_hw, pad_hw
    if c % 16 == 0:
        if pw or ph:
            pad_w, pad_h = 2 * pw, 2 * ph
        else:
            pad_w, pad_h = ow * sw + 2 - iw, oh * sh + 2 - ih
        if not (pad_w or pad_h):
            return filter_size + 16
        full = (iw + pad_w) * (ih + pad_h) * c
        return filter_size + (full if full <= 40 * 1024 else (iw + pad_w) * 3 * c) + 16
    if c >= 12:  # channels padded to 16
        c16 = _up(c, 16)
        total_w = 2 * pw + max(0, ow * sw + 2 - iw)
        total_h = 2 * ph + max(0, oh * sh + 2 - ih)
        return 9 * c16 + (iw + total_w) * (ih + total_h) * c16 + ow * oh * c16 + 64
    return 2 * (filter_size + iw * ih * c) + 32
