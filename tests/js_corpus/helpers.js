logInfo(formatDate(parseTimeStamp("2024-03-07 08:05:09"), "%4Y-%2M-%2D %2H:%2N:%2S"));
logInfo(escapeUrl("a b&c"), escapeXmlStr("<a href=\"x\">"));
var d = DOMDocument.fromXMLString("<root x='1'><item/></root>");
logInfo(d.documentElement.getAttribute("x"), d.root.item.length());
logWarning("careful");
