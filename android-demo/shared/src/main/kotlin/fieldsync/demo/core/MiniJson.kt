// A small JSON reader for the reference data document (product names, question texts).
// The demo's core layer stays dependency-free so it compiles with plain kotlinc on the JVM
// and in the Android app alike.
package fieldsync.demo.core

internal object MiniJson {
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.ws()
        val v = p.value()
        p.ws()
        require(p.i == text.length) { "trailing characters at ${p.i}" }
        return v
    }

    private class Parser(val s: String) {
        var i = 0

        fun ws() {
            while (i < s.length && s[i].isWhitespace()) i++
        }

        fun value(): Any? {
            ws()
            require(i < s.length) { "unexpected end of JSON" }
            return when (val c = s[i]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> lit("true", true)
                'f' -> lit("false", false)
                'n' -> lit("null", null)
                else -> if (c == '-' || c.isDigit()) num() else error("unexpected '$c' at $i")
            }
        }

        private fun lit(word: String, v: Any?): Any? {
            require(s.startsWith(word, i)) { "bad literal at $i" }
            i += word.length
            return v
        }

        private fun num(): Double {
            val start = i
            while (i < s.length && (s[i].isDigit() || s[i] in "+-.eE")) i++
            return s.substring(start, i).toDouble()
        }

        private fun str(): String {
            i++ // opening quote
            val sb = StringBuilder()
            while (true) {
                require(i < s.length) { "unterminated string" }
                val c = s[i++]
                when (c) {
                    '"' -> return sb.toString()
                    '\\' -> {
                        val e = s[i++]
                        when (e) {
                            'n' -> sb.append('\n')
                            't' -> sb.append('\t')
                            'r' -> sb.append('\r')
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000c')
                            'u' -> {
                                sb.append(s.substring(i, i + 4).toInt(16).toChar())
                                i += 4
                            }
                            else -> sb.append(e)
                        }
                    }
                    else -> sb.append(c)
                }
            }
        }

        private fun arr(): List<Any?> {
            i++
            val out = ArrayList<Any?>()
            ws()
            if (s[i] == ']') { i++; return out }
            while (true) {
                out.add(value())
                ws()
                when (s[i++]) {
                    ',' -> continue
                    ']' -> return out
                    else -> error("expected , or ] at ${i - 1}")
                }
            }
        }

        private fun obj(): Map<String, Any?> {
            i++
            val out = LinkedHashMap<String, Any?>()
            ws()
            if (s[i] == '}') { i++; return out }
            while (true) {
                ws()
                val k = str()
                ws()
                require(s[i++] == ':') { "expected : at ${i - 1}" }
                out[k] = value()
                ws()
                when (s[i++]) {
                    ',' -> continue
                    '}' -> return out
                    else -> error("expected , or } at ${i - 1}")
                }
            }
        }
    }
}

/** Display names from the reference data (the typed bindings carry ids only). */
data class Catalog(
    val productNames: Map<String, String> = emptyMap(),
    val promotionNames: Map<String, String> = emptyMap(),
    val positionLabels: Map<String, String> = emptyMap(),
) {
    fun product(id: String) = productNames[id] ?: id
    fun promotion(id: String) = promotionNames[id] ?: id
    fun position(id: String) = positionLabels[id] ?: id

    companion object {
        @Suppress("UNCHECKED_CAST")
        fun fromReferenceJson(json: String): Catalog {
            val root = MiniJson.parse(json) as? Map<String, Any?> ?: return Catalog()
            fun list(key: String) = (root[key] as? List<Map<String, Any?>>).orEmpty()
            val products = list("products").associate { it["id"] as String to (it["name"] as? String ?: it["id"] as String) }
            val promos = list("promotions").associate { it["id"] as String to (it["name"] as? String ?: it["id"] as String) }
            val positions = HashMap<String, String>()
            for (pg in list("planograms")) {
                for (pos in (pg["positions"] as? List<Map<String, Any?>>).orEmpty()) {
                    val shelf = (pos["shelf"] as? Double)?.toInt()
                    val place = (pos["position"] as? Double)?.toInt()
                    val product = products[pos["product_id"] as? String] ?: pos["product_id"]
                    positions[pos["id"] as String] = "Shelf $shelf · position $place · $product"
                }
            }
            return Catalog(products, promos, positions)
        }
    }
}
